/** UrlSpace: request URLs to drive paths and drive paths to hrefs, under a base URL and a root. */
import { describe, expect, it } from "vitest";
import { UrlSpace } from "../../src/dav/paths.js";

describe("UrlSpace", () => {
  it("without base or root, URL paths are drive paths", () => {
    const space = new UrlSpace("", "/");
    expect(space.pathOf("/a%20b/c")).toEqual({ path: "/a b/c", slash: false });
    expect(space.pathOf("/")).toEqual({ path: "/", slash: true });
    expect(space.href("/a b/c", false)).toBe("/a%20b/c");
    expect(space.href("/", true)).toBe("/");
  });

  it("a base URL is stripped on the way in and added on the way out", () => {
    const space = new UrlSpace("/dav", "/");
    expect(space.pathOf("/dav")).toEqual({ path: "/", slash: false });
    expect(space.pathOf("/dav/")).toEqual({ path: "/", slash: true });
    expect(space.pathOf("/dav/x/y")).toEqual({ path: "/x/y", slash: false });
    // Outside the base: not this server's, whatever it looks like.
    expect(space.pathOf("/")).toBeUndefined();
    expect(space.pathOf("/davx/y")).toBeUndefined();
    expect(space.pathOf("/other/dav")).toBeUndefined();
    expect(space.href("/", true)).toBe("/dav/");
    expect(space.href("/x/é", false)).toBe("/dav/x/%C3%A9");
  });

  it("a base URL with encoded characters matches its decoded form", () => {
    const space = new UrlSpace("/my%20dav/", "/");
    expect(space.pathOf("/my dav/f")).toEqual({ path: "/f", slash: false });
    expect(space.pathOf("/my%20dav/f")).toEqual({ path: "/f", slash: false });
    expect(space.href("/f", false)).toBe("/my%20dav/f");
  });

  it("a user's root is what they see as /", () => {
    const space = new UrlSpace("/dav", "/Family/kim");
    expect(space.pathOf("/dav/")).toEqual({ path: "/Family/kim", slash: true });
    expect(space.pathOf("/dav/a/b")).toEqual({ path: "/Family/kim/a/b", slash: false });
    expect(space.href("/Family/kim", true)).toBe("/dav/");
    expect(space.href("/Family/kim/a b", true)).toBe("/dav/a%20b/");
    // A lock rooted above the user's root (taken by someone who sees more) shows as their root.
    expect(space.href("/Family", true)).toBe("/dav/");
    expect(space.href("/", true)).toBe("/dav/");
    // A sibling whose name starts like the root is not inside it.
    expect(space.href("/Family/kimberly", false)).toBe("/dav/");
  });

  it("dot segments cannot climb out of the root: they are refused", () => {
    const space = new UrlSpace("", "/Kids");
    expect(() => space.pathOf("/../x")).toThrow(/refused path segment/);
    expect(() => space.pathOf("/%2e%2e/x")).toThrow(/refused path segment/);
  });
});
