import { ApiError, Code, paramError, errors } from "../errors.js";
import { Envelope, readJson, type Ctx, type Router } from "../http.js";
import { optString, reqString } from "../bind.js";
import type { Auth } from "../auth.js";
import { anonymousUserJson, userJson, type EmulatorState } from "../state.js";
import type { User } from "../model.js";

const EMAIL = /^[^@\s]+@[^@\s]+$/;

export function requireUser(ctx: Ctx): User {
  if (!ctx.user) throw errors.loginRequired();
  return ctx.user;
}

/** Site, session and user routes (§2, §7). */
export function registerAccountRoutes(router: Router, state: EmulatorState, auth: Auth): void {
  const api = "/api/v4";

  router.add("GET", `${api}/site/ping`, async () => "4.18.0");

  router.add("GET", `${api}/site/captcha`, async () => {
    const { ticket } = auth.newCaptcha();
    // A 1×1 PNG: the answer is for humans; tests read it from /__emulator/captcha.
    const png =
      "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII=";
    return { image: `data:image/png;base64,${png}`, ticket };
  });

  router.add("GET", `${api}/site/config/:section`, async (ctx) => {
    switch (ctx.params.section) {
      case "basic":
        return {
          instance_id: "7c3c5d4e-emulator",
          title: "Cloudreve",
          themes: "{}",
          default_theme: "#1976d2",
          user: ctx.user ? userJson(state, ctx.user) : anonymousUserJson(),
          logo: "/static/img/logo.svg",
          logo_light: "/static/img/logo_light.svg",
          captcha_type: "normal",
        };
      case "login":
        return {
          login_captcha: state.settings.captcha,
          reg_captcha: false,
          forget_captcha: false,
          authn: false,
          register_enabled: false,
        };
      case "explorer":
        return {
          max_batch_size: state.settings.maxBatchSize,
          file_viewers: [],
          thumbnail_width: 400,
          thumbnail_height: 300,
          custom_props: [],
          full_text_search: false,
        };
      default:
        return {};
    }
  });

  router.add("GET", `${api}/session/prepare`, async (ctx) => {
    const email = ctx.query.get("email");
    if (!email) throw paramError("Email cannot be empty");
    if (!EMAIL.test(email)) throw paramError();
    const user = state.users.find((u) => u.email.toLowerCase() === email.toLowerCase());
    if (!user) throw new ApiError(Code.NotFound, "User not found");
    return { webauthn_enabled: false, password_enabled: true };
  });

  router.add("POST", `${api}/session/token`, async (ctx) => {
    const body = await readJson(ctx);
    const email = reqString(body, "email", "Email");
    const password = reqString(body, "password", "Password");
    if (!EMAIL.test(email)) throw paramError();
    if (password.length < 4) throw paramError("Password too short");
    if (password.length > 128) throw paramError("Password too long");
    if (state.settings.captcha) {
      const ok = auth.checkCaptcha(optString(body, "ticket"), optString(body, "captcha"));
      if (!ok) throw new ApiError(Code.CaptchaError, "CAPTCHA not match.");
    }
    const user = state.users.find((u) => u.email.toLowerCase() === email.toLowerCase());
    if (!user || user.password !== password) {
      throw new ApiError(Code.InvalidPassword, "Incorrect password or email address");
    }
    // Code 203 "continue" is not an error: its data is the 2FA session id.
    if (user.otpSecret) return new Envelope(Code.NotFullySuccess, auth.start2fa(user));
    return { user: userJson(state, user), token: await auth.issue(user) };
  });

  router.add("POST", `${api}/session/token/2fa`, async (ctx) => {
    const body = await readJson(ctx);
    const otp = reqString(body, "otp", "OTP");
    const sessionId = reqString(body, "session_id", "SessionID");
    const user = auth.finish2fa(sessionId, otp);
    return { user: userJson(state, user), token: await auth.issue(user) };
  });

  router.add("POST", `${api}/session/token/refresh`, async (ctx) => {
    const body = await readJson(ctx);
    return auth.refresh(reqString(body, "refresh_token", "RefreshToken"));
  });

  router.add("DELETE", `${api}/session/token`, async (ctx) => {
    const body = await readJson(ctx);
    await auth.revoke(reqString(body, "refresh_token", "RefreshToken"));
    return "";
  });

  router.add("GET", `${api}/user/me`, async (ctx) => userJson(state, requireUser(ctx)));

  router.add("GET", `${api}/user/capacity`, async (ctx) => {
    const user = requireUser(ctx);
    return { total: user.capacity, used: state.used(user) };
  });
}
