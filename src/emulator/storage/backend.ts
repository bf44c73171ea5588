/**
 * Where the objects of a storage policy live, as Cloudreve reaches them itself: HeadObject for
 * a completed upload's size, PutObject for the server's own writes (`PUT /file/content`,
 * relay), DeleteObject when an entity's last reference goes, and presigned GETs for downloads.
 * Presigned URLs are valid `expiresIn` seconds from now, as the drivers sign them
 * (`Presign(time.Until(expire))`). The emulator's object store is one; an `S3Backend` is
 * another.
 */
export interface ObjectBackend {
  /** The object's size, or undefined when there is no such object. */
  objectSize(key: string): Promise<number | undefined>;
  /** Stores a fully written local file as the object `key`; the file is moved or removed. */
  putObject(key: string, file: string): Promise<void>;
  deleteObject(key: string): Promise<void>;
  presignGet(key: string, expiresIn: number): Promise<string>;
}

/**
 * The multipart uploads of an S3 bucket as Cloudreve's s3 driver uses them
 * (`[S] driver/s3/s3.go`): the server creates one per session, the client sends its part PUTs
 * and its completion POST to presigned URLs, cancel aborts it.
 */
export interface MultipartUploads {
  /** CreateMultipartUpload: its upload id. */
  createMultipartUpload(key: string): Promise<string>;
  /** UploadPart `partNumber` (from 1) of `length` bytes, presigned. */
  presignPart(
    key: string,
    uploadId: string,
    partNumber: number,
    length: number,
    expiresIn: number,
  ): Promise<string>;
  /** CompleteMultipartUpload, presigned. */
  presignComplete(key: string, uploadId: string, expiresIn: number): Promise<string>;
  /** AbortMultipartUpload: the parts go; an upload no longer open is left as it is. */
  abortMultipartUpload(key: string, uploadId: string): Promise<void>;
}

/**
 * An S3 bucket, objects and multipart uploads, in place of the emulator's own storage origin
 * behind the s3, ks3 and cos policies (`EmulatorOptions.s3Backend`): e.g. an independent S3
 * server, reached with an S3 SDK.
 */
export interface S3Backend extends ObjectBackend, MultipartUploads {}
