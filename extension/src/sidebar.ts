/**
 * The Workbench sidebar: Snapshots, Runs (live) and Models, all read through the REST API.
 *
 * Built for a 300 px left panel: the sections are stacked, collapsible panes whose headers never
 * scroll away (only a section's body scrolls), so Models is one click away however many runs
 * there are; each run is one line (see sidebarRuns.ts). Plain DOM rather than React: the panes
 * are short lists that re-render from JSON.
 */
import { Widget } from '@lumino/widgets';

import { workbenchIcon } from './icons';
import { ConnectionLine } from './sidebarConnection';
import { ModelsSection, promoteRun } from './sidebarModels';
import { RunsSection } from './sidebarRuns';
import { PRODUCTION, SidebarSection } from './sidebarSection';
import { SnapshotsSection } from './sidebarSnapshots';

/** How often the runs list polls while the panel is visible. */
const RUNS_POLL_MS = 2000;
/** Snapshots and models change rarely: refresh them every few polls. */
const SLOW_EVERY = 5;

export interface ISidebarActions {
  openNotebook(runId: string): void;
  compare(runIds: string[], metric: string | null): void;
  /** Open the main-area table of all runs (the sidebar lists the most recent ones). */
  openRunsTable?: () => void;
  /** Open a model's Monitor tab. */
  openMonitor?: (model: string) => void;
}

export class WorkbenchSidebar extends Widget {
  constructor(actions: ISidebarActions) {
    super();
    this.id = 'workbench-sidebar';
    this.title.icon = workbenchIcon;
    this.title.caption = 'Workbench';
    this.addClass('wb-Sidebar');

    const layoutChanged = () => this.updateLayoutClasses();
    this.snapshots = new SnapshotsSection(
      new SidebarSection('snapshots', 'Snapshots', () => void this.loadSnapshots(), layoutChanged)
    );
    this.runs = new RunsSection(new SidebarSection('runs', 'Runs', () => void this.loadRuns(true), layoutChanged), {
      openNotebook: runId => actions.openNotebook(runId),
      compare: (runIds, metric) => actions.compare(runIds, metric),
      openRunsTable: actions.openRunsTable,
      promote: runId => this.promote(runId)
    });
    this.models = new ModelsSection(
      new SidebarSection('models', 'Models', () => void this.loadModels(), layoutChanged),
      actions.openMonitor
    );
    this.node.appendChild(this.connection.node);
    for (const part of [this.snapshots, this.runs, this.models]) {
      this.node.appendChild(part.section.node);
    }
    this.updateLayoutClasses();
  }

  /** Which team server and user the lab works as (hidden for a workspace folder). */
  private connection = new ConnectionLine();
  private snapshots: SnapshotsSection;
  private runs: RunsSection;
  private models: ModelsSection;
  private timer: number | null = null;
  private ticks = 0;

  /** While Runs is open it takes the space the others leave; closed, the others may grow. */
  private updateLayoutClasses(): void {
    this.toggleClass('wb-mod-runsOpen', !this.runs.section.collapsed);
  }

  protected onAfterShow(): void {
    void this.refreshAll();
    if (this.timer === null) {
      this.timer = window.setInterval(() => void this.tick(), RUNS_POLL_MS);
    }
  }

  protected onAfterHide(): void {
    if (this.timer !== null) {
      window.clearInterval(this.timer);
      this.timer = null;
    }
  }

  dispose(): void {
    this.onAfterHide();
    super.dispose();
  }

  private async tick(): Promise<void> {
    if (!this.isVisible) {
      return;
    }
    this.ticks += 1;
    await this.loadRuns(false);
    if (this.ticks % SLOW_EVERY === 0) {
      await Promise.all([this.connection.load(), this.loadSnapshots(), this.loadModels(), this.loadExperiments()]);
    }
  }

  async refreshAll(): Promise<void> {
    await Promise.all([
      this.connection.load(),
      this.loadSnapshots(),
      this.loadExperiments(),
      this.loadRuns(true),
      this.loadModels()
    ]);
  }

  loadSnapshots(): Promise<void> {
    return this.snapshots.load();
  }

  loadExperiments(): Promise<void> {
    return this.runs.loadExperiments();
  }

  /** Re-read the runs list; `force` re-renders it even when nothing changed. */
  loadRuns(force: boolean): Promise<void> {
    return this.runs.load(force);
  }

  loadModels(): Promise<void> {
    return this.models.load();
  }

  /** Register a run's model (the model's gates decide) and point `alias` at it; a refusal stays in the dialog. */
  async promote(runId: string, model: string | null = null, alias = PRODUCTION): Promise<void> {
    if (await promoteRun(runId, model, alias)) {
      await this.loadModels();
    }
  }
}
