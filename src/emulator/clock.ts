/** The emulator's clock: real time plus an offset that tests move forward to expire things. */
export class Clock {
  private offsetMs = 0;

  now(): number {
    return Date.now() + this.offsetMs;
  }

  nowSeconds(): number {
    return Math.floor(this.now() / 1000);
  }

  advance(seconds: number): void {
    this.offsetMs += seconds * 1000;
  }
}

/**
 * A timestamp as Go's RFC 3339 (nano) layout writes it: the fraction without trailing zeros
 * (absent when zero), and the server's zone as `Z` or `+hh:mm`.
 */
export function formatTime(ms: number, utcOffsetMinutes: number): string {
  const local = new Date(ms + utcOffsetMinutes * 60_000);
  const iso = local.toISOString(); // 2025-01-02T15:04:05.120Z, shifted into the zone
  const fraction = iso.slice(20, 23).replace(/0+$/, "");
  let zone = "Z";
  if (utcOffsetMinutes !== 0) {
    const abs = Math.abs(utcOffsetMinutes);
    const hh = String(Math.floor(abs / 60)).padStart(2, "0");
    const mm = String(abs % 60).padStart(2, "0");
    zone = `${utcOffsetMinutes < 0 ? "-" : "+"}${hh}:${mm}`;
  }
  return `${iso.slice(0, 19)}${fraction ? "." + fraction : ""}${zone}`;
}
