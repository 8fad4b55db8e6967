/**
 * The sidebar's Snapshots section: one line per registered snapshot (`points@1  3 rows × 2 cols`);
 * a click shows its schema and profile as a compact table that fits a 300 px sidebar (each
 * column's full statistics in the row's tooltip).
 */
import { ISnapshot, errorText, requestAPI } from './api';
import { disclosure, el } from './dom';
import { formatValue } from './format';
import { SidebarSection, showError } from './sidebarSection';

export class SnapshotsSection {
  constructor(readonly section: SidebarSection) {}

  private openRef: string | null = null;

  async load(): Promise<void> {
    const body = this.section.body;
    let snaps: ISnapshot[];
    try {
      snaps = await requestAPI<ISnapshot[]>('snapshots');
    } catch (error) {
      showError(body, error);
      return;
    }
    this.section.setCount(snaps.length ? String(snaps.length) : '');
    body.textContent = '';
    if (!snaps.length) {
      body.appendChild(el('div', 'wb-Empty', 'No snapshots yet: wb.snapshot("name", df) registers one.'));
      return;
    }
    const list = el('ul', 'wb-List wb-Snapshots');
    for (const snap of snaps) {
      const item = el('li', 'wb-Snapshot');
      item.dataset.ref = snap.ref;
      const line = el('div', 'wb-Snapshot-line');
      const size = `${snap.row_count} rows × ${snap.columns.length} cols`;
      line.append(el('span', 'wb-Snapshot-ref', snap.ref), el('span', 'wb-Muted wb-Snapshot-size', size));
      line.title = [snap.ref, size, snap.description || snap.source].filter(Boolean).join('\n');
      disclosure(line, this.openRef === snap.ref, () => {
        this.openRef = this.openRef === snap.ref ? null : snap.ref;
        void this.load();
      });
      item.appendChild(line);
      if (this.openRef === snap.ref) {
        item.appendChild(el('div', 'wb-Muted', 'Loading…'));
        void this.showDetail(snap.ref, item);
      }
      list.appendChild(item);
    }
    body.appendChild(list);
  }

  private async showDetail(ref: string, item: HTMLElement): Promise<void> {
    let snap: ISnapshot;
    try {
      snap = await requestAPI<ISnapshot>(`snapshots/${encodeURIComponent(ref)}`);
    } catch (error) {
      item.lastElementChild!.textContent = errorText(error);
      return;
    }
    const detail = el('div', 'wb-Snapshot-detail');
    const meta = el('div', 'wb-Muted wb-Snapshot-meta');
    meta.textContent = `${snap.source} · by ${snap.creator} · ${snap.created_at.slice(0, 19).replace('T', ' ')}`;
    meta.title = meta.textContent;
    detail.appendChild(meta);
    if (snap.description) {
      detail.appendChild(el('div', 'wb-Snapshot-description', snap.description));
    }
    // Four narrow columns (fixed layout, values ellipsised); everything else in the row's tooltip.
    const table = el('table', 'wb-Table wb-Schema');
    const head = table.createTHead().insertRow();
    for (const text of ['column', 'type', 'nulls', 'range']) {
      head.appendChild(el('th', '', text));
    }
    const tbody = table.createTBody();
    for (const column of snap.columns) {
      const stats = snap.profile[column.name] ?? {};
      const row = tbody.insertRow();
      const range =
        stats.min === undefined && stats.max === undefined
          ? ''
          : `${formatValue(stats.min)} – ${formatValue(stats.max)}`;
      for (const value of [column.name, column.type, formatValue(stats.null_count), range]) {
        row.insertCell().textContent = value;
      }
      row.title = [
        `${column.name}: ${column.type}`,
        ...['null_count', 'distinct_estimate', 'min', 'max', 'mean']
          .filter(key => stats[key] !== undefined && stats[key] !== null)
          .map(key => `${key.replace('_estimate', '').replace('_', ' ')} = ${formatValue(stats[key])}`)
      ].join('\n');
    }
    detail.appendChild(table);
    item.lastElementChild!.replaceWith(detail);
  }
}
