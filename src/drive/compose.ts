import { randomUUID } from "node:crypto";
import { extname } from "node:path";
import type { CloudreveApi } from "../cloudreve/api.js";
import type { File } from "../cloudreve/types.js";
import { joinUri } from "../cloudreve/uri.js";
import { Exists, UpstreamError } from "../errors.js";
import type { EventLog } from "../log.js";

/** Where an item sits: its parent folder's URI and its name. */
export interface Place {
  parentUri: string;
  name: string;
}

export function uriOf(p: Place): string {
  return joinUri(p.parentUri, [p.name]);
}

/**
 * A name no client uses, for an item parked during a composition. The extension stays, so a
 * storage policy's extension rules accept the rename.
 */
function temporaryName(name: string): string {
  return `.cloudreve-dav-${randomUUID()}${extname(name)}`;
}

/** A composition failed and could not be undone: say where the item is, never drop it silently. */
function stranded(what: string, at: Place, cause: unknown): UpstreamError {
  const reason = cause instanceof Error ? cause.message : String(cause);
  return new UpstreamError(`${reason}; ${what} is kept as ${uriOf(at)}`, { cause });
}

/**
 * WebDAV MOVE and COPY out of Cloudreve's primitives (spec §5.3, §5.4): rename works in place
 * only, move/copy keep the name and fail the whole call (Exists) on any name clash in the
 * destination folder, and nothing overwrites. Every step that could collide goes through a
 * temporary name, and every failure undoes what was done, so the source is never lost.
 */
export class Composer {
  constructor(
    private readonly api: CloudreveApi,
    private readonly permanentDelete: boolean,
    private readonly log?: EventLog,
  ) {}

  /**
   * Removes an item the composition no longer wants. The operation itself has happened, so a
   * failure here does not fail it; the item stays, and the log says where.
   */
  private async discard(at: Place, what: string, permanent: boolean): Promise<void> {
    await this.api
      .remove([uriOf(at)], permanent)
      .catch((err: unknown) =>
        this.log?.warn(
          { uri: uriOf(at), err: err instanceof Error ? err.message : String(err) },
          `could not remove ${what}: it is left under that name; delete it by hand`,
        ),
      );
  }

  /**
   * Runs `place` (which puts something at `dst`) with an existing `dst` parked under a
   * temporary name; the old item is deleted only once `place` succeeded, and put back if not.
   */
  async replacing(dst: Place, exists: boolean, place: () => Promise<File>): Promise<File> {
    if (!exists) return place();
    const aside = { parentUri: dst.parentUri, name: temporaryName(dst.name) };
    await this.api.rename(uriOf(dst), aside.name);
    let file: File;
    try {
      file = await place();
    } catch (err) {
      await this.api.rename(uriOf(aside), dst.name).catch((undo: unknown) => {
        throw stranded("the destination's previous item", aside, undo);
      });
      throw err;
    }
    // The new item is in place: a failure to delete the old one leaves a parked leftover,
    // which is better than failing an operation that has happened.
    await this.discard(
      aside,
      "the replaced item parked during a MOVE or COPY",
      this.permanentDelete,
    );
    return file;
  }

  /** Moves `src` to an absent `dst`. `clash`: the destination folder holds `src.name`. */
  async move(src: Place, dst: Place, clash: boolean): Promise<File> {
    if (src.parentUri === dst.parentUri) return this.api.rename(uriOf(src), dst.name);
    const moved = await this.moveInto(src, dst.parentUri, clash);
    try {
      return moved.name === dst.name
        ? await this.api.info(uriOf(moved))
        : await this.api.rename(uriOf(moved), dst.name);
    } catch (err) {
      await this.moveBack(moved, src);
      throw err;
    }
  }

  /**
   * Moves `src` into the folder `parentUri`: directly, or, when an item there holds its name,
   * under a temporary name. Returns where it went; on failure the source is where it was.
   */
  private async moveInto(src: Place, parentUri: string, clash: boolean): Promise<Place> {
    if (!clash) {
      try {
        await this.api.move([uriOf(src)], parentUri);
        return { parentUri, name: src.name };
      } catch (err) {
        // A clash fails the whole call, so nothing moved and the temporary name can be tried.
        if (!(err instanceof Exists)) throw err;
      }
    }
    const parked = { parentUri: src.parentUri, name: temporaryName(src.name) };
    await this.api.rename(uriOf(src), parked.name);
    try {
      await this.api.move([uriOf(parked)], parentUri);
    } catch (err) {
      await this.api.rename(uriOf(parked), src.name).catch((undo: unknown) => {
        throw stranded("the source", parked, undo);
      });
      throw err;
    }
    return { parentUri, name: parked.name };
  }

  /** Undoes `moveInto`: the item goes back to its folder and name. */
  private async moveBack(moved: Place, home: Place): Promise<void> {
    try {
      await this.api.move([uriOf(moved)], home.parentUri);
      if (moved.name !== home.name)
        await this.api.rename(uriOf({ parentUri: home.parentUri, name: moved.name }), home.name);
    } catch (undo) {
      throw stranded("the source", moved, undo);
    }
  }

  /** Copies `src` with everything in it to an absent `dst`. */
  async copy(src: Place, dst: Place, clash: boolean): Promise<File> {
    if (src.parentUri === dst.parentUri || clash) return this.copyStaged(src, dst);
    try {
      await this.api.move([uriOf(src)], dst.parentUri, true);
    } catch (err) {
      if (err instanceof Exists) return this.copyStaged(src, dst);
      throw err;
    }
    const copied = { parentUri: dst.parentUri, name: src.name };
    if (copied.name === dst.name) return this.api.info(uriOf(dst));
    try {
      return await this.api.rename(uriOf(copied), dst.name);
    } catch (err) {
      // A copy that cannot get its name is not wanted; the source was never touched.
      await this.discard(copied, "an unwanted copy", true);
      throw err;
    }
  }

  /**
   * Copies through an empty staging folder beside the destination, where the copy can take
   * its name without clashing with anything (the source's own folder always holds its name).
   */
  private async copyStaged(src: Place, dst: Place): Promise<File> {
    const stage = { parentUri: dst.parentUri, name: temporaryName("") };
    const stageUri = uriOf(stage);
    await this.api.create(stageUri, "folder", true);
    try {
      await this.api.move([uriOf(src)], stageUri, true);
      if (src.name !== dst.name) await this.api.rename(joinUri(stageUri, [src.name]), dst.name);
      await this.api.move([joinUri(stageUri, [dst.name])], dst.parentUri);
      return await this.api.info(uriOf(dst));
    } finally {
      // Empty after success; after a failure it holds the unwanted partial copy.
      await this.discard(stage, "a COPY's staging folder", true);
    }
  }

  /** COPY with depth 0 of a folder: the folder and its dead properties, no members. */
  async copyFolderOnly(dst: Place, dav: Record<string, string>): Promise<File> {
    const file = await this.api.create(uriOf(dst), "folder", true);
    const patches = Object.entries(dav).map(([key, value]) => ({ key, value }));
    if (patches.length === 0) return file;
    try {
      await this.api.patchMetadata([uriOf(dst)], patches);
    } catch (err) {
      await this.discard(dst, "a folder copy whose properties could not be set", true);
      throw err;
    }
    return { ...file, metadata: { ...file.metadata, ...dav } };
  }
}
