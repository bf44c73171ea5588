import { createReadStream } from "node:fs";
import { rm, stat } from "node:fs/promises";
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
  UploadPartCommand,
} from "@aws-sdk/client-s3";
import { getSignedUrl } from "@aws-sdk/s3-request-presigner";
import type { S3Backend } from "../../src/emulator/storage/backend.js";

/** An S3 server's endpoint and credentials. */
export interface S3Endpoint {
  endpoint: string;
  accessKeyId: string;
  secretAccessKey: string;
}

/** A client for a path-style S3 server, signing as Cloudreve's driver does (no checksums). */
export function s3Client(server: S3Endpoint): S3Client {
  return new S3Client({
    endpoint: server.endpoint,
    region: "us-east-1",
    forcePathStyle: true,
    credentials: { accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey },
    // Cloudreve's driver (aws-sdk-go) sends and presigns no flexible checksums.
    requestChecksumCalculation: "WHEN_REQUIRED",
    responseChecksumValidation: "WHEN_REQUIRED",
  });
}

/**
 * A bucket of an S3 server as the emulator's S3 backend, reached the way Cloudreve's s3 driver
 * reaches its bucket: API calls with the AWS SDK, and URLs presigned with SigV4 by the SDK's
 * presigner (UploadPart with its Content-Length, as the driver signs it).
 */
export class AwsS3Backend implements S3Backend {
  /**
   * `signingDate`: the time presigned URLs are dated with (`X-Amz-Date`); the clock by
   * default. A test dates one in the past to have the server find it expired.
   */
  constructor(
    readonly client: S3Client,
    readonly bucket: string,
    private readonly signingDate: () => Date = () => new Date(),
  ) {}

  private signing(expiresIn: number) {
    return { expiresIn, signingDate: this.signingDate() };
  }

  async createMultipartUpload(key: string): Promise<string> {
    const out = await this.client.send(
      new CreateMultipartUploadCommand({ Bucket: this.bucket, Key: key }),
    );
    if (!out.UploadId) throw new Error("CreateMultipartUpload answered no UploadId");
    return out.UploadId;
  }

  presignPart(
    key: string,
    uploadId: string,
    partNumber: number,
    length: number,
    expiresIn: number,
  ): Promise<string> {
    const input = { Bucket: this.bucket, Key: key, UploadId: uploadId, PartNumber: partNumber };
    const command = new UploadPartCommand({ ...input, ContentLength: length });
    return getSignedUrl(this.client, command, this.signing(expiresIn));
  }

  presignComplete(key: string, uploadId: string, expiresIn: number): Promise<string> {
    const input = { Bucket: this.bucket, Key: key, UploadId: uploadId };
    const command = new CompleteMultipartUploadCommand(input);
    return getSignedUrl(this.client, command, this.signing(expiresIn));
  }

  /** An upload no longer open (completed, or aborted before) is left as it is. */
  async abortMultipartUpload(key: string, uploadId: string): Promise<void> {
    const input = { Bucket: this.bucket, Key: key, UploadId: uploadId };
    try {
      await this.client.send(new AbortMultipartUploadCommand(input));
    } catch (err) {
      if (!(err instanceof S3ServiceException && err.name === "NoSuchUpload")) throw err;
    }
  }

  presignGet(key: string, expiresIn: number): Promise<string> {
    const command = new GetObjectCommand({ Bucket: this.bucket, Key: key });
    return getSignedUrl(this.client, command, this.signing(expiresIn));
  }

  async objectSize(key: string): Promise<number | undefined> {
    try {
      const out = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }));
      return out.ContentLength;
    } catch (err) {
      if (err instanceof S3ServiceException && err.$metadata.httpStatusCode === 404)
        return undefined;
      throw err;
    }
  }

  async putObject(key: string, file: string): Promise<void> {
    const { size } = await stat(file);
    await this.client.send(
      new PutObjectCommand({
        Bucket: this.bucket,
        Key: key,
        Body: createReadStream(file),
        ContentLength: size,
      }),
    );
    await rm(file, { force: true });
  }

  async deleteObject(key: string): Promise<void> {
    await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: key }));
  }
}
