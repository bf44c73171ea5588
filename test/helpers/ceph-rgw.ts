import { execFile, spawn, type ChildProcess } from "node:child_process";
import { randomUUID } from "node:crypto";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { until } from "./wait.js";

const run = promisify(execFile);

/** A running Ceph Object Gateway and the S3 credentials of its one user. */
export interface RadosGateway {
  /** Path-style S3 endpoint, e.g. http://127.0.0.1:41234 */
  endpoint: string;
  accessKeyId: string;
  secretAccessKey: string;
  stop(): Promise<void>;
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/**
 * Ceph's S3 server (radosgw, Debian's `radosgw` with `ceph-mon` and `ceph-osd`) on a throwaway
 * one-monitor, one-OSD cluster that keeps its objects in memory (memstore), without cephx,
 * listening on loopback only. Starting takes a few seconds; `stop` ends the three daemons and
 * removes everything.
 */
export async function startRadosGateway(): Promise<RadosGateway> {
  const dir = await mkdtemp(join(tmpdir(), "ceph-rgw-"));
  await Promise.all(["mon", "osd", "rgw", "run"].map((d) => mkdir(join(dir, d))));
  const conf = join(dir, "ceph.conf");
  const [monPort, rgwPort] = [await freePort(), await freePort()];
  const fsid = randomUUID();
  await writeFile(
    conf,
    `[global]
fsid = ${fsid}
mon host = v2:127.0.0.1:${monPort}
public addr = 127.0.0.1
ms bind ipv6 = false
auth cluster required = none
auth service required = none
auth client required = none
# Without cephx, radosgw has no connection mode to offer unless told (EACCES at the monitor).
ms mon client mode = crc
ms client mode = crc
run dir = ${dir}/run
admin socket = ${dir}/run/$name.asok
pid file = ${dir}/run/$name.pid
log file = ${dir}/$name.log
mon data = ${dir}/mon
# A nearly full disk must not stop the monitor.
mon data avail crit = 0
mon allow pool size one = true
# Each of RGW's pools otherwise waits a second of Paxos batching.
paxos propose interval = 0.05
paxos min wait = 0.01
osd data = ${dir}/osd
osd objectstore = memstore
memstore device bytes = 1073741824
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 1
osd pool default pgp num = 1
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
[client.rgw]
rgw frontends = beast endpoint=127.0.0.1:${rgwPort}
rgw data = ${dir}/rgw
`,
  );
  const c = ["-c", conf];
  const daemons: ChildProcess[] = [];
  const daemon = (cmd: string, args: string[]) => {
    // -f: in the foreground (so that this process owns it), logging to its file.
    const child = spawn(cmd, [...c, "-f", ...args], { stdio: "ignore" });
    child.on("error", () => undefined);
    daemons.push(child);
  };
  const stop = async () => {
    for (const child of daemons.reverse()) {
      if (child.exitCode !== null || child.signalCode !== null) continue;
      const exited = new Promise((resolve) => child.once("exit", resolve));
      child.kill("SIGTERM");
      const stuck = setTimeout(() => child.kill("SIGKILL"), 10_000);
      await exited;
      clearTimeout(stuck);
    }
    await rm(dir, { recursive: true, force: true });
  };
  try {
    const monmap = join(dir, "monmap");
    await run("monmaptool", [
      "--create",
      "--add",
      "a",
      `v2:127.0.0.1:${monPort}`,
      "--fsid",
      fsid,
      monmap,
    ]);
    await run("ceph-mon", [...c, "--mkfs", "-i", "a", "--monmap", monmap]);
    daemon("ceph-mon", ["-i", "a"]);
    const osd = await run("ceph", [...c, "--connect-timeout", "30", "osd", "create"]);
    const id = osd.stdout.trim();
    await run("ceph-osd", [...c, "-i", id, "--mkfs"]);
    daemon("ceph-osd", ["-i", id]);
    const user = { uid: "cloudreve", key: "CLOUDREVEDAVTEST", secret: randomUUID() };
    // Creating the user creates RGW's pools, which needs the OSD up.
    await run("radosgw-admin", [
      ...c,
      "user",
      "create",
      `--uid=${user.uid}`,
      `--display-name=${user.uid}`,
      `--access-key=${user.key}`,
      `--secret=${user.secret}`,
    ]);
    daemon("radosgw", ["-n", "client.rgw"]);
    const endpoint = `http://127.0.0.1:${rgwPort}`;
    await until(
      "radosgw to answer",
      async () => (await fetch(endpoint).catch(() => null))?.ok === true,
      30_000,
    );
    return { endpoint, accessKeyId: user.key, secretAccessKey: user.secret, stop };
  } catch (err) {
    await stop();
    throw new Error(
      `Ceph's S3 server did not start (Debian packages ceph-mon, ceph-osd, radosgw): ${String(err)}`,
    );
  }
}
