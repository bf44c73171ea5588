import { mkdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import mime from "mime";
import { accountName, stateFileOf } from "./accounts.js";
import { CloudreveApi } from "./cloudreve/api.js";
import type { CaptchaAnswer } from "./cloudreve/auth.js";
import type { Token } from "./cloudreve/types.js";
import { commandName, defaults, type Config } from "./config.js";
import { GatewayError, LoginRejected, NotFound } from "./errors.js";
import { Prompter } from "./prompt.js";

/** A reason to stop that the person at the terminal can act on. */
class LoginFailed extends Error {
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
  }
}

const FEED_HINT =
  "type it when asked, or give one line per question on standard input (password, then the " +
  "captcha or the two-factor code)";

async function required(
  prompter: Prompter,
  question: string,
  what: string,
  secret = false,
): Promise<string> {
  const line = await prompter.ask(question, { secret });
  // A password is taken as typed; spaces around the other answers are slips.
  const answer = secret ? line : line?.trim();
  if (!answer) throw new LoginFailed(`no ${what} given: ${FEED_HINT}`, 2);
  return answer;
}

/** The bytes of a captcha image from the data URL Cloudreve sends (plain base64 taken too). */
function decodeImage(image: string): { type: string; bytes: Buffer } {
  const header = /^data:([^;,]+)([^,]*),/.exec(image);
  if (!header) return { type: "image/png", bytes: Buffer.from(image, "base64") };
  const data = image.slice(header[0].length);
  const bytes = header[2]!.includes(";base64")
    ? Buffer.from(data, "base64")
    : Buffer.from(decodeURIComponent(data));
  return { type: header[1]!, bytes };
}

/**
 * What shows an image inline in the terminals that can: iTerm2 (OSC 1337) and kitty (its
 * graphics protocol, PNG only); undefined elsewhere, where the file's path has to do.
 */
export function inlineImage(
  type: string,
  bytes: Buffer,
  env: NodeJS.ProcessEnv,
): string | undefined {
  const data = bytes.toString("base64");
  if (env.TERM_PROGRAM === "iTerm.app") {
    return `\x1b]1337;File=inline=1;size=${bytes.length}:${data}\x07\n`;
  }
  if (env.TERM === "xterm-kitty" && type === "image/png") {
    // At most 4096 characters of payload per escape; m=1 says more follows.
    const chunks = data.match(/.{1,4096}/g) ?? [];
    const escapes = chunks.map(
      (chunk, i) =>
        `\x1b_G${i === 0 ? "a=T,f=100," : ""}m=${i < chunks.length - 1 ? 1 : 0};${chunk}\x1b\\`,
    );
    return `${escapes.join("")}\n`;
  }
  return undefined;
}

/** The captcha answer when the site asks for one (§2.2), read from the person at the terminal. */
async function solveCaptcha(
  api: CloudreveApi,
  prompter: Prompter,
  stateDir: string,
): Promise<CaptchaAnswer | undefined> {
  const kind = await api.loginCaptcha();
  if (kind === undefined) return undefined;
  if (kind !== "normal") {
    throw new LoginFailed(
      `the site asks for a "${kind}" captcha, which only a browser can show: sign in there and ` +
        "configure its refresh token instead (see the README)",
    );
  }
  const { image, ticket } = await api.captcha();
  const { type, bytes } = decodeImage(image);
  await mkdir(stateDir, { recursive: true, mode: 0o700 });
  const file = join(stateDir, `login-captcha.${mime.getExtension(type) ?? "png"}`);
  await writeFile(file, bytes);
  try {
    const inline = process.stderr.isTTY ? inlineImage(type, bytes, process.env) : undefined;
    process.stderr.write(`captcha image: ${file}\n${inline ?? ""}`);
    return { ticket, answer: await required(prompter, "captcha: ", "captcha answer") };
  } finally {
    await rm(file, { force: true });
  }
}

async function twoFactor(api: CloudreveApi, prompter: Prompter, session: string): Promise<Token> {
  const otp = await required(prompter, "two-factor code: ", "two-factor code");
  try {
    return await api.finishLogIn(session, otp);
  } catch (err) {
    if (err instanceof NotFound) {
      throw new LoginFailed("the two-factor step took longer than 10 minutes: start again");
    }
    throw err;
  }
}

/** What to tell about a failed sign-in, or undefined for a failure that is a bug. */
function problemOf(err: unknown): { message: string; exitCode: number } | undefined {
  if (err instanceof LoginFailed) return err;
  if (err instanceof LoginRejected) {
    const message =
      err.code === 40026
        ? "the captcha answer was wrong (each image allows one try): start again for a new one"
        : err.code === 40022
          ? "the two-factor code was refused (check the authenticator and this machine's clock): start again"
          : err.message;
    return { message: `Cloudreve refused the sign-in: ${message}`, exitCode: 1 };
  }
  if (err instanceof GatewayError) return { message: err.message, exitCode: 1 };
  return undefined;
}

/**
 * `cloudreve-dav login`: signs in as a person does (password, image captcha, 2FA code) and
 * keeps the token pair in the state file the gateway reads for that account, so that the
 * gateway starts with the email alone and renews the session from then on.
 */
export async function loginCommand(config: Config): Promise<number> {
  const command = `${commandName()} login`;
  const { upstream } = config;
  if (!upstream) {
    process.stderr.write(
      `${command}: upstream is not set, so there is no Cloudreve to sign in to. Example: ${command} --upstream https://pan.example.com --email me@example.com\n`,
    );
    return 2;
  }
  const prompter = new Prompter();
  let api: CloudreveApi | undefined;
  try {
    const email = config.email ?? (await required(prompter, "email: ", "email"));
    const password = config.password ?? (await required(prompter, "password: ", "password", true));
    const stateFile = stateFileOf(config.stateDir, accountName(upstream, { email }));
    api = new CloudreveApi({ baseUrl: upstream, email, stateFile, queue: { concurrency: 1 } });
    const captcha = await solveCaptcha(api, prompter, config.stateDir);
    const step = await api.startLogIn(email, password, captcha);
    const token =
      "token" in step ? step.token : await twoFactor(api, prompter, step.twoFactorSession);
    // The gateway's own Authenticator for this account writes the file, so both agree on it.
    await api.transport.auth.adopt(token);
    const stateDir =
      config.stateDir === defaults().stateDir ? "" : ` --state-dir ${config.stateDir}`;
    process.stdout.write(
      `Signed in to ${upstream} as ${email}. The session is kept in ${stateFile}.\n` +
        `Serve the drive without a password: ${commandName()} --upstream ${upstream} --email ${email}${stateDir}\n` +
        "The gateway renews the session while it runs. Signing out of it in Cloudreve, a new " +
        "password, or 14 days without a renewal end it; the gateway then says to run " +
        `\`${command}\` again.\n`,
    );
    return 0;
  } catch (err) {
    const problem = problemOf(err);
    if (!problem) throw err;
    process.stderr.write(`${command}: ${problem.message}\n`);
    return problem.exitCode;
  } finally {
    prompter.close();
    await api?.close();
  }
}
