/**
 * ownCloud's `oc:checksums` as the gateway serves it and rclone reads it: the expected value of
 * some bytes, and the value a PROPFIND answers, read with a parser of the tests' own.
 */
import { createHash } from "node:crypto";
import { expect } from "vitest";
import { enc, raw } from "./http-raw.js";
import { tree, type Tree } from "./xml-tree.js";

const OC = "{http://owncloud.org/ns}";
const D = "{DAV:}";

/** rclone's PROPFIND body with vendor owncloud or nextcloud (backend/webdav owncloudProps). */
export const RCLONE_PROPFIND = `<?xml version="1.0"?>
<d:propfind  xmlns:d="DAV:" xmlns:oc="http://owncloud.org/ns" xmlns:nc="http://nextcloud.org/ns">
 <d:prop>
  <d:displayname />
  <d:getlastmodified />
  <d:getcontentlength />
  <d:resourcetype />
  <d:getcontenttype />
  <oc:checksums />
 </d:prop>
</d:propfind>
`;

/** `SHA1:<hex> MD5:<hex>` of some bytes, computed here. */
export function checksumsOf(data: Buffer | string): string {
  const hex = (algorithm: string) => createHash(algorithm).update(data).digest("hex");
  return `SHA1:${hex("sha1")} MD5:${hex("md5")}`;
}

const elements = (node: Tree, el: string) =>
  node.children.filter((c): c is Tree => typeof c !== "string" && c.el === el);
const text = (node: Tree) => node.children.filter((c) => typeof c === "string").join("");

/**
 * oc:checksums per response of a multistatus: href → the `oc:checksum` text when it came in a
 * 200 propstat, undefined when it came as missing (or not at all). Fails when it came as both.
 */
export function checksumsIn(xml: string): Map<string, string | undefined> {
  const out = new Map<string, string | undefined>();
  for (const response of elements(tree(xml), `${D}response`)) {
    const href = text(elements(response, `${D}href`)[0]!);
    let found: string | undefined;
    let listed = 0;
    for (const propstat of elements(response, `${D}propstat`)) {
      const ok = / 200 /.test(text(elements(propstat, `${D}status`)[0]!));
      for (const prop of elements(propstat, `${D}prop`)) {
        for (const sums of elements(prop, `${OC}checksums`)) {
          listed++;
          if (ok) found = elements(sums, `${OC}checksum`).map(text).join(" ");
        }
      }
    }
    expect(listed, `oc:checksums of ${href} listed once`).toBeLessThanOrEqual(1);
    out.set(href, found);
  }
  return out;
}

/** The checksums the gateway serves for one path, asked for as rclone asks (Depth 0). */
export async function servedChecksums(base: string, path: string): Promise<string | undefined> {
  const r = await raw(base, "PROPFIND", enc(path), {
    headers: { depth: "0", "content-type": "application/xml" },
    body: RCLONE_PROPFIND,
  });
  expect(r.status, r.text).toBe(207);
  const all = checksumsIn(r.text);
  expect(all.size, r.text).toBe(1);
  return [...all.values()][0];
}
