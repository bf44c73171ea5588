/**
 * Change notices between gateway instances serving one account: an instance that changed the
 * drive tells the others which paths to look up again, so their caches do not serve what it
 * replaced. Cloudreve's own change events (src/cloudreve/events.ts) may lag or be off; these
 * come from the instance that made the change, as soon as the upstream confirmed it.
 */

export interface ChangeBusListener {
  /** Another instance changed these paths (and what is below them). */
  changed(paths: string[]): void;
  /** Notices may have been missed (the connection dropped and came back): forget everything. */
  reset(): void;
}

export interface ChangeBus {
  /** Tells the other instances; the publishing instance's own listeners hear nothing. */
  publish(paths: readonly string[]): void;
  /** Returns the function that stops `listener` hearing. */
  subscribe(listener: ChangeBusListener): () => void;
  close(): Promise<void>;
}

/**
 * One process alone (the default): there is no other instance to tell, and the one that made a
 * change has already updated its own cache, so a notice would only make it forget what it just
 * learned. Publishing reaches no one.
 */
export class LocalChangeBus implements ChangeBus {
  publish(_paths: readonly string[]): void {}

  subscribe(_listener: ChangeBusListener): () => void {
    return () => {};
  }

  async close(): Promise<void> {}
}
