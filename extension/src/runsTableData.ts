/**
 * The runs table's data, kept column by column as `GET runs?format=columns` sends it, and the
 * view over it (sorted, grouped, collapsed groups left out) that the grid shows.
 *
 * Sorting happens here, in the browser: the server sends the whole (filtered) table once, and a
 * click on a header re-orders an index array instead of asking the server again, which keeps a
 * sort of 10,000 runs well under a second.
 */
import { formatDuration, formatValue } from './format';

/** `GET runs?format=columns`: `data[i]` holds every value of column `columns[i]`. */
export interface IColumnarRuns {
  columns: string[];
  data: any[][];
  rows: number;
}

/** How a column's values read and sort. */
export type ColumnKind = 'id' | 'time' | 'duration' | 'status' | 'text' | 'number' | 'value';

/** The header band a column sits under. */
export type ColumnSection = 'run' | 'params' | 'metrics' | 'tags';

export const SECTION_LABELS: Record<ColumnSection, string> = {
  run: 'Run',
  params: 'Parameters',
  metrics: 'Metrics',
  tags: 'Tags'
};

export interface IColumnSpec {
  /** The server's column (`status`, `params.lr`), or `start` (started_at, else created_at). */
  key: string;
  label: string;
  section: ColumnSection;
  kind: ColumnKind;
  width: number;
  /** Shown only once the user picks it in the column chooser. */
  hidden?: boolean;
}

/** The run's own columns, in the order the table shows them. */
const BASE_COLUMNS: IColumnSpec[] = [
  { key: 'start', label: 'start', section: 'run', kind: 'time', width: 150 },
  { key: 'duration_s', label: 'duration', section: 'run', kind: 'duration', width: 80 },
  { key: 'status', label: 'status', section: 'run', kind: 'status', width: 76 },
  { key: 'creator', label: 'user', section: 'run', kind: 'text', width: 80 },
  { key: 'experiment', label: 'experiment', section: 'run', kind: 'text', width: 110 },
  { key: 'sweep_id', label: 'sweep', section: 'run', kind: 'text', width: 110, hidden: true },
  { key: 'notebook', label: 'notebook', section: 'run', kind: 'text', width: 140, hidden: true },
  { key: 'parent_run_id', label: 'rerun of', section: 'run', kind: 'text', width: 150, hidden: true },
  { key: 'inputs', label: 'inputs', section: 'run', kind: 'text', width: 140, hidden: true }
];

/** Runs still moving: their rows change, so the table keeps polling while there are any. */
export const ACTIVE = new Set(['queued', 'running']);

/** A text literal of the filter language. */
function quote(text: string): string {
  return `'${text.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
}

/** The short id the table shows: the random end of `20261124-235901-1a2b3c4d` (the start has its own column). */
export function shortId(runId: string): string {
  return runId.length > 8 ? runId.slice(-8) : runId;
}

/** The runs, column-major, with an index from run id to row for merging polled updates. */
export class RunsStore {
  readonly values = new Map<string, any[]>();
  private rowOf = new Map<string, number>();
  private count = 0;

  get rowCount(): number {
    return this.count;
  }

  get runIds(): string[] {
    return this.values.get('run_id') ?? [];
  }

  column(key: string): any[] {
    let values = this.values.get(key);
    if (!values) {
      values = new Array(this.count).fill(null);
      this.values.set(key, values);
    }
    return values;
  }

  has(runId: string): boolean {
    return this.rowOf.has(runId);
  }

  row(runId: string): number {
    return this.rowOf.get(runId) ?? -1;
  }

  value(key: string, row: number): any {
    return this.values.get(key)?.[row] ?? null;
  }

  /** Replace everything with a fresh answer. */
  reset(answer: IColumnarRuns): void {
    this.values.clear();
    this.rowOf.clear();
    this.count = 0;
    this.merge(answer);
  }

  /** Update the runs in `answer` in place and append the new ones. */
  merge(answer: IColumnarRuns): void {
    const ids: string[] = answer.data[answer.columns.indexOf('run_id')] ?? [];
    const rows = ids.map(id => {
      let row = this.rowOf.get(id);
      if (row === undefined) {
        row = this.count++;
        this.rowOf.set(id, row);
      }
      return row;
    });
    for (const values of this.values.values()) {
      values.length = this.count;
    }
    answer.columns.forEach((key, index) => {
      const target = this.column(key);
      const source = answer.data[index];
      for (let i = 0; i < rows.length; i++) {
        target[rows[i]] = source[i] ?? null;
      }
    });
    for (const values of this.values.values()) {
      for (let i = 0; i < this.count; i++) {
        if (values[i] === undefined) {
          values[i] = null;
        }
      }
    }
    const start = this.column('start');
    const started = this.column('started_at');
    const created = this.column('created_at');
    for (const row of rows) {
      start[row] = started[row] ?? created[row];
    }
  }

  /** Every column the table can show: the run's own, then params, metrics and tags by name. */
  columnSpecs(): IColumnSpec[] {
    const keys = [...this.values.keys()].sort();
    const dynamic = (prefix: string, section: ColumnSection, kind: ColumnKind, hidden: boolean) =>
      keys
        .filter(key => key.startsWith(prefix))
        .map(key => {
          const label = key.slice(prefix.length);
          return { key, label, section, kind, width: headerWidth(label), hidden };
        });
    return [
      ...BASE_COLUMNS,
      ...dynamic('params.', 'params', 'value', false),
      ...dynamic('metrics.', 'metrics', 'number', false),
      ...dynamic('tags.', 'tags', 'text', true)
    ];
  }

  /** Ids of the runs that are queued or running. */
  activeRuns(): string[] {
    const status = this.values.get('status') ?? [];
    return this.runIds.filter((_, row) => ACTIVE.has(status[row]));
  }

  /**
   * The filter that selects what can have changed since the table was loaded: runs queued or
   * running now or when last seen, and runs created since the newest one held.
   */
  changedFilter(): string {
    const parts = [`status in ('queued', 'running')`];
    const active = this.activeRuns();
    if (active.length) {
      parts.push(`run_id in (${active.map(quote).join(', ')})`);
    }
    const newest = this.newestCreated();
    if (newest) {
      parts.push(`created_at >= ${quote(newest)}`);
    }
    return parts.join(' or ');
  }

  /** The newest creation time held (ISO), where polling for new runs starts. */
  newestCreated(): string | null {
    let newest: string | null = null;
    let newestTime = -Infinity;
    for (const value of this.values.get('created_at') ?? []) {
      const time = value ? Date.parse(value) : NaN;
      if (time > newestTime) {
        newestTime = time;
        newest = value;
      }
    }
    return newest;
  }
}

/** A cell as the grid shows it. */
export function formatCell(kind: ColumnKind, value: any): string {
  if (value === null || value === undefined) {
    return '';
  }
  switch (kind) {
    case 'time':
      return formatTime(value);
    case 'duration':
      return formatDuration(value);
    case 'id':
      return shortId(String(value));
    default:
      return typeof value === 'number' ? formatNumber(value) : formatValue(value);
  }
}

/** Four significant digits without trailing zeros (`0.001`, `0.9342`, `12.5`); exponents only when tiny or huge. */
export function formatNumber(value: number): string {
  if (Number.isInteger(value) || !Number.isFinite(value)) {
    return String(value);
  }
  const size = Math.abs(value);
  if (size >= 1e-4 && size < 1e6) {
    return String(parseFloat(value.toPrecision(4)));
  }
  return value.toExponential(3);
}

const pad = (n: number) => String(n).padStart(2, '0');

/** Local time as `2026-11-24 23:59:01`: sortable by eye, no locale surprises. */
function formatTime(iso: string): string {
  const when = new Date(iso);
  if (Number.isNaN(when.getTime())) {
    return String(iso);
  }
  return (
    `${when.getFullYear()}-${pad(when.getMonth() + 1)}-${pad(when.getDate())} ` +
    `${pad(when.getHours())}:${pad(when.getMinutes())}:${pad(when.getSeconds())}`
  );
}

export type GroupBy = 'none' | 'experiment' | 'sweep_id';

export interface IViewOptions {
  sortKey: string;
  sortKind: ColumnKind;
  descending: boolean;
  groupBy: GroupBy;
  collapsed: ReadonlySet<string>;
}

export interface IGroup {
  key: string;
  label: string;
  size: number;
  collapsed: boolean;
}

/**
 * The rows the grid shows, in order: a data row number, or `-(g + 1)` for the header of group g.
 */
export interface IView {
  rows: Int32Array;
  groups: IGroup[];
}

/**
 * Sort keys of one column: numbers (NaN when missing) for numeric kinds, otherwise text; param
 * values mix both (numbers sort before text, as the server orders them).
 */
function compareRows(
  store: RunsStore,
  key: string,
  kind: ColumnKind,
  descending: boolean
): (a: number, b: number) => number {
  const values = store.values.get(key) ?? [];
  const n = store.rowCount;
  const sign = descending ? -1 : 1;
  const ids = store.runIds;
  const tie = (a: number, b: number) => (ids[a] < ids[b] ? 1 : ids[a] > ids[b] ? -1 : 0); // newest first
  if (kind === 'number' || kind === 'duration' || kind === 'time') {
    const numbers = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      const v = values[i];
      numbers[i] = v === null || v === undefined ? NaN : kind === 'time' ? Date.parse(v) : Number(v);
    }
    return (a, b) => {
      const x = numbers[a];
      const y = numbers[b];
      if (x !== x || y !== y) {
        return x !== x ? (y !== y ? tie(a, b) : 1) : -1; // missing last, either direction
      }
      return x === y ? tie(a, b) : (x < y ? -1 : 1) * sign;
    };
  }
  const numbers = new Float64Array(n);
  const texts: (string | null)[] = new Array(n);
  for (let i = 0; i < n; i++) {
    const v = values[i];
    if (typeof v === 'number') {
      numbers[i] = v;
      texts[i] = null;
    } else {
      numbers[i] = NaN;
      texts[i] = v === null || v === undefined ? null : typeof v === 'string' ? v : JSON.stringify(v);
    }
  }
  const rank = (i: number) => (numbers[i] === numbers[i] ? 0 : texts[i] !== null ? 1 : 2);
  return (a, b) => {
    const ra = rank(a);
    const rb = rank(b);
    if (ra !== rb || ra === 2) {
      return ra === 2 && rb === 2 ? tie(a, b) : ra === 2 ? 1 : rb === 2 ? -1 : (ra - rb) * sign;
    }
    if (ra === 0) {
      return numbers[a] === numbers[b] ? tie(a, b) : (numbers[a] < numbers[b] ? -1 : 1) * sign;
    }
    const x = texts[a]!;
    const y = texts[b]!;
    return x === y ? tie(a, b) : (x < y ? -1 : 1) * sign;
  };
}

/** Sort (then group) the store's rows as `options` say. */
export function buildView(store: RunsStore, options: IViewOptions): IView {
  const order = Array.from({ length: store.rowCount }, (_, i) => i);
  order.sort(compareRows(store, options.sortKey, options.sortKind, options.descending));
  if (options.groupBy === 'none') {
    return { rows: Int32Array.from(order), groups: [] };
  }
  const members = new Map<string, number[]>();
  const keys = store.values.get(options.groupBy) ?? [];
  for (const row of order) {
    const key = keys[row] === null || keys[row] === undefined ? '' : String(keys[row]);
    let list = members.get(key);
    if (!list) {
      members.set(key, (list = []));
    }
    list.push(row);
  }
  const names = [...members.keys()].sort((a, b) => (a === '' ? 1 : b === '' ? -1 : a < b ? -1 : a > b ? 1 : 0));
  const what = options.groupBy === 'experiment' ? 'experiment' : 'sweep';
  const groups: IGroup[] = [];
  const rows: number[] = [];
  names.forEach((key, index) => {
    const list = members.get(key)!;
    const collapsed = options.collapsed.has(key);
    const size = `${list.length.toLocaleString()} run${list.length === 1 ? '' : 's'}`;
    const label = key ? `${what} ${key} · ${size}` : `no ${what} · ${size}`;
    groups.push({ key, label, size: list.length, collapsed });
    rows.push(-(index + 1));
    if (!collapsed) {
      for (const row of list) {
        rows.push(row); // not push(...list): a spread of 100,000 arguments overflows the stack
      }
    }
  });
  return { rows: Int32Array.from(rows), groups };
}

/**
 * A param/metric column wide enough for its name and the sort arrow (the grid paints on a canvas
 * and cannot size to its content): about 7.5 px per character of the bold header, within bounds.
 */
export function headerWidth(label: string): number {
  return Math.max(96, Math.min(220, Math.round(label.length * 7.5 + 30)));
}
