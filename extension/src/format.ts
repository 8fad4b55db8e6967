/**
 * How a param, metric or other JSON value reads in the Workbench tables: numbers with four
 * significant digits (integers as they are), strings as they are, anything else as JSON.
 */
export function formatValue(value: any, missing = ''): string {
  if (value === null || value === undefined) {
    return missing;
  }
  if (typeof value === 'number') {
    return Number.isInteger(value) ? String(value) : value.toPrecision(4);
  }
  return typeof value === 'string' ? value : JSON.stringify(value);
}

/**
 * A metric in a one-line list: at most four significant digits without trailing zeros
 * (`0.973`, `12.35`, `1200`), integers as they are, exponents only for very small or large values.
 */
export function formatMetric(value: any, missing = '—'): string {
  if (typeof value !== 'number') {
    return formatValue(value, missing);
  }
  if (Number.isInteger(value) || !Number.isFinite(value)) {
    return String(value);
  }
  const short = String(Number(value.toPrecision(4)));
  return short.length > 9 ? value.toExponential(2) : short;
}

/** A run's duration the way people say it: `0.8 s`, `42 s`, `3 min 5 s`, `2 h 4 min`. */
export function formatDuration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) {
    return '';
  }
  if (seconds < 10) {
    return `${seconds.toFixed(1)} s`;
  }
  const total = Math.round(seconds);
  if (total < 60) {
    return `${total} s`;
  }
  const hours = Math.floor(total / 3600);
  const minutes = Math.floor((total % 3600) / 60);
  return hours ? `${hours} h ${minutes} min` : `${minutes} min ${total % 60} s`;
}

/** A past moment as local time plus how long ago: `since 14:02 (5 min ago)`; older than a day, the date. */
export function formatSince(iso: string | null | undefined, now: number = Date.now()): string {
  if (!iso) {
    return '';
  }
  const when = new Date(iso);
  if (Number.isNaN(when.getTime())) {
    return '';
  }
  const ago = Math.max(0, (now - when.getTime()) / 1000);
  const clock = when.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  if (ago > 86400) {
    return `since ${when.toLocaleDateString()} ${clock}`;
  }
  const agoText = ago < 60 ? 'just now' : `${formatDuration(ago).replace(/ \d+ s$/, '')} ago`;
  return `since ${clock} (${agoText})`;
}
