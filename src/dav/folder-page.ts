import { createHash } from "node:crypto";
import type { Entry } from "../drive/types.js";
import { rfc3339 } from "./props.js";
import { escapeAttr, escapeXml } from "./xml.js";

/**
 * The page a browser gets for a folder: a table of its members. It is valid HTML5 and also
 * well-formed XML (every element closed), so tests can check its structure with an XML parser.
 * It loads nothing and runs nothing; names go out escaped.
 */

const STYLE =
  "body{font:15px/1.5 system-ui,sans-serif;margin:2em auto;max-width:64em;padding:0 1em}" +
  "h1{font-size:1.3em;font-weight:600;overflow-wrap:anywhere}" +
  "table{border-collapse:collapse;width:100%}" +
  "th,td{padding:.35em .7em;border-bottom:1px solid #8884;text-align:left}" +
  "th{font-weight:600}th:first-child{width:100%}td{overflow-wrap:anywhere}" +
  ".size{text-align:right;white-space:nowrap}time{white-space:nowrap;opacity:.75}" +
  "a{text-decoration:none}a:hover{text-decoration:underline}tr:hover td{background:#8881}";

/**
 * Lets that one style in and nothing else: even markup smuggled into a name could not load or
 * run anything.
 */
export const FOLDER_PAGE_CSP =
  `default-src 'none'; style-src 'sha256-${createHash("sha256").update(STYLE).digest("base64")}'; ` +
  "base-uri 'none'; form-action 'none'";

/** Folders first, then by name as people read it: "file 2" before "file 10". */
const byName = new Intl.Collator("en", { numeric: true });

const UNITS = ["KiB", "MiB", "GiB", "TiB", "PiB"];

/** "999 B", "1.5 KiB", "42 MiB": one decimal below 10 of a unit, whole units above. */
function humanSize(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  let value = bytes / 1024;
  let unit = 0;
  // Step up where rounding would show 1024 of a unit.
  while (value >= 1023.5 && unit < UNITS.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value < 9.95 ? value.toFixed(1) : Math.round(value)} ${UNITS[unit]}`;
}

export interface FolderPage {
  /** The folder as its URL path shows it, decoded: "/Photos/2024/". */
  title: string;
  /** Absent at the user's root. */
  parentHref?: string;
  members: readonly { entry: Entry; href: string }[];
}

function row(entry: Entry, href: string): string {
  const name = escapeXml(entry.name + (entry.isDir ? "/" : ""));
  const size = entry.isDir
    ? `<td class="size">—</td>`
    : `<td class="size" title="${entry.size} bytes">${humanSize(entry.size)}</td>`;
  const iso = rfc3339(entry.mtimeMs);
  const modified = iso
    ? `<time datetime="${iso}">${iso.replace("T", " ").replace("Z", " UTC")}</time>`
    : "";
  return `<tr><td><a href="${escapeAttr(href)}">${name}</a></td>${size}<td>${modified}</td></tr>`;
}

export function folderPage({ title, parentHref, members }: FolderPage): string {
  const rows = [...members]
    .sort(
      (a, b) =>
        Number(b.entry.isDir) - Number(a.entry.isDir) || byName.compare(a.entry.name, b.entry.name),
    )
    .map(({ entry, href }) => row(entry, href));
  if (parentHref !== undefined) {
    rows.unshift(
      `<tr><td><a href="${escapeAttr(parentHref)}" rel="up">Parent folder</a></td><td class="size"></td><td></td></tr>`,
    );
  }
  if (members.length === 0) rows.push(`<tr><td colspan="3">This folder is empty.</td></tr>`);
  const heading = escapeXml(`Index of ${title}`);
  return (
    `<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8" />` +
    `<meta name="viewport" content="width=device-width, initial-scale=1" />` +
    `<meta name="color-scheme" content="light dark" />` +
    `<title>${heading}</title><style>${STYLE}</style></head>\n<body><h1>${heading}</h1>\n` +
    `<table><thead><tr><th>Name</th><th class="size">Size</th><th>Modified</th></tr></thead>\n` +
    `<tbody>\n${rows.join("\n")}\n</tbody></table></body></html>\n`
  );
}
