/**
 * Demo mode: with no upstream configured, an emulated Cloudreve runs in this process and holds a
 * few sample files, so there is something to mount, browse and play at once.
 */
import { randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CloudreveApi } from "./cloudreve/api.js";
import { joinUri } from "./cloudreve/uri.js";
import { commandName, type Config } from "./config.js";
import { startEmulator } from "./emulator/index.js";

export interface Demo {
  /** The emulated upstream and its account, in place of the configured ones. */
  upstream: Pick<Config, "email" | "password" | "refreshToken" | "stateDir"> & {
    upstream: string;
  };
  /** What to tell the person who started it, once the gateway serves `url`. */
  banner(url: string, signIn: boolean): string;
  close(): Promise<void>;
}

/**
 * Media made once with ffmpeg and committed: code cannot easily write an H.264 stream, and a
 * video every player and browser opens (QuickTime included) has to be one.
 *   test-pattern.mp4: ffmpeg -f lavfi -i testsrc=size=320x240:rate=10 -f lavfi -i sine=frequency=440
 *     -t 5 -c:v libx264 -preset veryslow -crf 30 -pix_fmt yuv420p -c:a aac -b:a 32k -shortest
 *     -movflags +faststart -map_metadata -1 -fflags +bitexact test-pattern.mp4
 *   colour-bars.png: ffmpeg -f lavfi -i smptehdbars=size=320x180 -frames:v 1 colour-bars.png
 */
const ASSETS = new URL("../assets/demo/", import.meta.url);

const README = `cloudreve-dav demo
==================

This drive is not a real Cloudreve: cloudreve-dav runs in demo mode, with an emulated
Cloudreve v4 server in the same process. Everything here lives in a temporary folder and is
gone when the gateway stops.

Things to try:
- Play Videos/Test pattern.mp4 or Music/A440 tone.wav straight from the mounted drive: players
  read with HTTP ranges and seek without downloading the whole file first.
- Copy files in, rename, move and delete them: each action becomes Cloudreve API calls.
- Open the gateway's address in a web browser: each folder shows as a table.

To serve your own Cloudreve drive instead, start cloudreve-dav with
  --upstream https://your.cloudreve --email you@example.com --password ...
`;

/** A mono 16-bit WAV of a sine tone at half scale, faded in and out so it does not click. */
function toneWav(hz: number, seconds: number, rate = 22_050): Buffer {
  const samples = Math.round(seconds * rate);
  const wav = Buffer.alloc(44 + samples * 2);
  wav.write("RIFF", 0, "latin1");
  wav.writeUInt32LE(36 + samples * 2, 4);
  wav.write("WAVEfmt ", 8, "latin1");
  wav.writeUInt32LE(16, 16); // format chunk size
  wav.writeUInt16LE(1, 20); // PCM
  wav.writeUInt16LE(1, 22); // channels
  wav.writeUInt32LE(rate, 24);
  wav.writeUInt32LE(rate * 2, 28); // bytes per second
  wav.writeUInt16LE(2, 32); // bytes per sample frame
  wav.writeUInt16LE(16, 34); // bits per sample
  wav.write("data", 36, "latin1");
  wav.writeUInt32LE(samples * 2, 40);
  const fade = rate / 20;
  for (let i = 0; i < samples; i++) {
    const gain = Math.min(1, i / fade, (samples - 1 - i) / fade) * 0.5;
    wav.writeInt16LE(
      Math.round(gain * 32767 * Math.sin((2 * Math.PI * hz * i) / rate)),
      44 + i * 2,
    );
  }
  return wav;
}

/** The sample drive: path segments and content. */
async function samples(): Promise<[string[], Buffer][]> {
  return [
    [["README.txt"], Buffer.from(README)],
    [["Music", "A440 tone.wav"], toneWav(440, 3)],
    [["Pictures", "Colour bars.png"], await readFile(new URL("colour-bars.png", ASSETS))],
    [["Videos", "Test pattern.mp4"], await readFile(new URL("test-pattern.mp4", ASSETS))],
  ];
}

/** Uploads the samples as any client would: through Cloudreve's API, as the demo account. */
async function seed(upstream: string, email: string, password: string): Promise<void> {
  const api = new CloudreveApi({ baseUrl: upstream, email, password });
  try {
    for (const [path, bytes] of await samples()) {
      // Writes a new file and the folders above it (§5.8).
      await api.putContent(joinUri("cloudreve://my", path), bytes, bytes.length);
    }
  } finally {
    await api.close();
  }
}

/** Ready-to-paste ways to mount `url`, and the demo account. */
function banner(url: string, signIn: boolean, account: Demo["upstream"]): string {
  const windowsNotes = ["it needs the WebClient service running: sc start WebClient"];
  // Windows sends a password over plain HTTP only after this registry change.
  if (signIn && url.startsWith("http:")) {
    windowsNotes.push(
      "to sign in over plain HTTP, first: reg add HKLM\\SYSTEM\\CurrentControlSet\\Services\\WebClient\\Parameters /v BasicAuthLevel /t REG_DWORD /d 2 /f, then restart WebClient",
    );
  }
  const indent = " ".repeat(20);
  return [
    "",
    "Demo mode: no upstream is configured, so an emulated Cloudreve runs in this process, with a",
    "few sample files (README.txt, Music, Pictures, Videos). Nothing is kept once it stops.",
    "",
    `Mount ${url} (WebDAV, ${signIn ? "sign in as a gateway user" : "no login needed on this machine"}), or open it in a browser:`,
    `  macOS Finder      Go > Connect to Server (Cmd-K), then: ${url}`,
    `  Windows Explorer  net use Z: ${url}`,
    ...windowsNotes.map((note) => `${indent}(${note})`),
    `  rclone            rclone lsd ':webdav,url="${url}":'`,
    ...(signIn
      ? [`${indent}(after the url, add: ,user=NAME,pass=<what rclone obscure PASSWORD prints>)`]
      : []),
    `  davfs2 (Linux)    printf 'buf_size 64\\n' > davfs2.conf   (Linux 6.16+ cannot list folders without it)`,
    `${indent}sudo mount -t davfs -o conf="$PWD/davfs2.conf" ${url} /mnt` +
      (signIn ? "" : "   (press Enter at the username and password prompts)"),
    "",
    `Demo Cloudreve account: ${account.email} / ${account.password} at ${account.upstream} (API under /api/v4)`,
    `Serve your own drive with: ${commandName()} --upstream https://your.cloudreve --email you@example.com --password …`,
    "",
    "",
  ].join("\n");
}

/** Starts the emulated Cloudreve with its demo account and sample files. */
export async function startDemoUpstream(): Promise<Demo> {
  const email = "demo@example.com";
  const password = randomBytes(9).toString("base64url");
  const emulator = await startEmulator({ email, password });
  // The demo account's tokens are thrown away with it, not kept in the state directory.
  const stateDir = await mkdtemp(join(tmpdir(), "cloudreve-dav-demo-"));
  const close = async () => {
    await emulator.close();
    await rm(stateDir, { recursive: true, force: true });
  };
  const upstream = { upstream: emulator.url, email, password, refreshToken: undefined, stateDir };
  try {
    await seed(emulator.url, email, password);
  } catch (err) {
    await close();
    throw err;
  }
  return { upstream, banner: (url, signIn) => banner(url, signIn, upstream), close };
}
