#!/usr/bin/env node
// The gateway's entry point. The WebDAV layer is not built yet, so there is nothing to serve.
process.stderr.write(
  "cloudreve-dav: no upstream is configured and the WebDAV gateway is not built yet.\n" +
    "Run `npm run emulator -- --port 5212` for a Cloudreve v4 server to develop against.\n",
);
process.exitCode = 1;
