import { randomUUID } from "node:crypto";
import { ApiError, Code } from "./errors.js";
import { formatUri } from "./uri.js";
import type { User } from "./model.js";

/**
 * Long-lived path locks (pkg/filemanager/lock/memlock.go): upload sessions hold one on their
 * target until they complete, are cancelled or expire. Short-lived operation locks need no
 * table here because the emulator runs each operation to the end without yielding.
 */
interface Lock {
  token: string;
  owner: User;
  elements: string[];
  application: string;
  expiresAt: number;
}

export class LockTable {
  private readonly locks = new Map<string, Lock>();

  constructor(private readonly now: () => number) {}

  acquire(owner: User, elements: string[], application: string, expiresAt: number): string {
    const token = randomUUID();
    this.locks.set(token, { token, owner, elements: [...elements], application, expiresAt });
    return token;
  }

  /** Every lock still alive, for tests that check nothing was left behind. */
  live(): { path: string; application: string; token: string; owner: string }[] {
    return [...this.locks.values()]
      .filter((l) => l.expiresAt > this.now())
      .map((l) => ({
        path: formatUri("my", l.elements),
        application: l.application,
        token: l.token,
        owner: l.owner.email,
      }));
  }

  release(token: string): boolean {
    return this.locks.delete(token);
  }

  /**
   * Throws 40073 when a live lock covers `elements` itself, or, for operations on a whole
   * subtree (delete, move, rename of a folder), anything below it.
   */
  check(owner: User, elements: readonly string[], subtree: boolean): void {
    const conflicts: Lock[] = [];
    for (const lock of this.locks.values()) {
      if (lock.expiresAt <= this.now()) {
        this.locks.delete(lock.token);
        continue;
      }
      if (lock.owner !== owner) continue;
      const same =
        lock.elements.length === elements.length &&
        lock.elements.every((e, i) => e === elements[i]);
      const below =
        subtree &&
        lock.elements.length > elements.length &&
        elements.every((e, i) => e === lock.elements[i]);
      if (same || below) conflicts.push(lock);
    }
    if (conflicts.length === 0) return;
    throw new ApiError(Code.LockConflict, "Lock conflict", {
      data: conflicts.map((l) => ({
        path: formatUri("my", l.elements),
        token: l.token,
        owner: { application: { type: l.application } },
        type: 0,
      })),
    });
  }
}
