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
