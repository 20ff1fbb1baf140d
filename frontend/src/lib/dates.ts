// Dates as UTC calendar days ("2025-01-31"): the usage API buckets by UTC day.

export function isoDay(d: Date): string {
  return d.toISOString().slice(0, 10);
}

export function addDays(day: string, n: number): string {
  const d = new Date(`${day}T00:00:00Z`);
  d.setUTCDate(d.getUTCDate() + n);
  return isoDay(d);
}

export function monthStart(now = new Date()): string {
  return `${isoDay(now).slice(0, 7)}-01`;
}

/** Every day from start (inclusive) to end (exclusive). */
export function daysBetween(start: string, end: string): string[] {
  const days: string[] = [];
  for (let d = start; d < end && days.length < 400; d = addDays(d, 1)) days.push(d);
  return days;
}
