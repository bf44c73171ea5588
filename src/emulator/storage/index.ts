import type { Clock } from "../clock.js";
import type { Faults, Stats } from "../control.js";
import type { UploadSession } from "../state.js";
import type { ObjectBackend, S3Backend } from "./backend.js";
import { ObjectStore } from "./objects.js";
import { StorageOrigin } from "./origin.js";
import type { PolicyType, StorageContext, UploadProvider } from "./provider.js";
import { remoteProvider } from "./remote.js";
import { s3Provider } from "./s3.js";
import { qiniuProvider } from "./qiniu.js";
import { upyunProvider } from "./upyun.js";
import { obsProvider } from "./obs.js";
import { ossProvider } from "./oss.js";
import { onedriveProvider } from "./onedrive.js";

export type { PolicyType, UploadProvider } from "./provider.js";

/** The emulated providers' upload protocols, by policy type. */
const PROVIDERS: Partial<Record<PolicyType, (ctx: StorageContext) => UploadProvider>> = {
  s3: s3Provider,
  ks3: s3Provider,
  cos: s3Provider,
  qiniu: qiniuProvider,
  upyun: upyunProvider,
  oss: ossProvider,
  obs: obsProvider,
  remote: remoteProvider,
  onedrive: onedriveProvider,
};

export const EMULATED_POLICIES: PolicyType[] = [
  "local",
  ...(Object.keys(PROVIDERS) as PolicyType[]),
];

/** The storage of a policy other than `local`: its objects, its provider, its origin. */
export interface Storage {
  readonly type: PolicyType;
  readonly objects: ObjectStore;
  /** Where the policy's objects live for the server's own calls: `objects`, or the S3 backend. */
  readonly backend: ObjectBackend;
  readonly provider: UploadProvider;
  readonly origin: StorageOrigin;
}

export interface StorageSetup {
  /** Where the objects and upload parts live on disk. */
  dir: string;
  clock: Clock;
  faults: Faults;
  /** The origins' requests and bytes; one for every policy's origin, as the stats show them. */
  stats: Stats;
  callbackUrl: (session: UploadSession) => string;
  /** The bucket of the s3, ks3 and cos policies; the other types keep their origin's objects. */
  s3Backend?: S3Backend;
}

export async function createStorage(type: PolicyType, setup: StorageSetup): Promise<Storage> {
  const factory = PROVIDERS[type];
  if (!factory) throw new Error(`storage policy "${type}" is not emulated`);
  const s3Backend = factory === s3Provider ? setup.s3Backend : undefined;
  const { clock, stats, callbackUrl } = setup;
  const objects = new ObjectStore(setup.dir, clock, stats);
  await objects.init();
  const provider = factory({ type, objects, s3Backend, stats, clock, callbackUrl });
  const origin = new StorageOrigin(objects, provider, setup.faults);
  return { type, objects, backend: s3Backend ?? objects, provider, origin };
}
