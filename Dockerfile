# cloudreve-dav: a WebDAV gateway for Cloudreve v4.
#
#   docker build -t cloudreve-dav .
#   docker run -p 8080:8080 \
#     -e CLOUDREVE_DAV_UPSTREAM=https://pan.example.com \
#     -e CLOUDREVE_DAV_EMAIL=me@example.com -e CLOUDREVE_DAV_PASSWORD=… \
#     -e CLOUDREVE_DAV_USERS='[{"name":"me","passwordHash":"scrypt$…"}]' \
#     -v cloudreve-dav-state:/var/lib/cloudreve-dav cloudreve-dav
#
# The container listens on 0.0.0.0, which the gateway only allows with sign-in: set
# CLOUDREVE_DAV_USERS (or "users" in a config file given with --config / CLOUDREVE_DAV_CONFIG),
# with hashes from:  echo 'a long passphrase' | docker run -i --rm cloudreve-dav hash-password
# or mount an htpasswd file (CLOUDREVE_DAV_HTPASSWD), or let people sign in with their own
# Cloudreve accounts (CLOUDREVE_DAV_AUTH=cloudreve, no email or password of the gateway's).
# Basic passwords need HTTPS: CLOUDREVE_DAV_TLS_CERT / _TLS_KEY, or a TLS proxy in front
# (CLOUDREVE_DAV_TRUSTED_PROXY, CLOUDREVE_DAV_BASE_URL).

# --- build: compile TypeScript to dist/ ---
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build

# --- runtime: production dependencies and dist/ only, as the non-root node user ---
FROM node:20-bookworm-slim
# Only the host is set as a CLOUDREVE_DAV_ variable (variables beat a config file); the state
# directory defaults to $XDG_STATE_HOME/cloudreve-dav, i.e. /var/lib/cloudreve-dav here.
ENV NODE_ENV=production \
    XDG_STATE_HOME=/var/lib \
    CLOUDREVE_DAV_HOST=0.0.0.0
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts && npm cache clean --force
COPY --from=build /app/dist ./dist
# Demo mode's sample media.
COPY assets ./assets
RUN mkdir -p /var/lib/cloudreve-dav && chown node:node /var/lib/cloudreve-dav
USER node
VOLUME ["/var/lib/cloudreve-dav"]
EXPOSE 8080
# OPTIONS needs no login, so the check works with gateway users configured.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.CLOUDREVE_DAV_PORT||8080)+'/',{method:'OPTIONS'}).then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
# SIGTERM (docker stop) drains in-flight requests for CLOUDREVE_DAV_SHUTDOWN_TIMEOUT_SECONDS
# (default 10): give `docker stop -t` more than that.
STOPSIGNAL SIGTERM
ENTRYPOINT ["node", "dist/cli.js"]
