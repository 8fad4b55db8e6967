/**
 * Workbench for JupyterLab: a sidebar (snapshots, live runs, models), "Run as experiment" for
 * notebooks (command palette and notebook toolbar), a Compare tab and a read-only view of a
 * run's executed notebook. Everything goes through the server's `/workbench/api/` REST API.
 */
import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import {
  ICommandPalette,
  IThemeManager,
  MainAreaWidget,
  ToolbarButton,
  WidgetTracker
} from '@jupyterlab/apputils';
import { IEditorLanguageRegistry } from '@jupyterlab/codemirror';
import { DocumentRegistry } from '@jupyterlab/docregistry';
import { INotebookModel, INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import { IRenderMimeRegistry } from '@jupyterlab/rendermime';
import { DisposableDelegate, IDisposable } from '@lumino/disposable';

import { openCompare, restyleCharts } from './compare';
import { workbenchIcon } from './icons';
import { MonitorView, openMonitor, restyleMonitors } from './monitorView';
import { openExecutedNotebook } from './notebookView';
import { runAsExperiment } from './runDialog';
import { RunsTable, createRunsTableWidget, restyleRunsTables } from './runsTable';
import { WorkbenchSidebar } from './sidebar';

const COMMANDS = {
  runExperiment: 'workbench:run-as-experiment',
  openSidebar: 'workbench:open-sidebar',
  compare: 'workbench:compare-runs',
  openRunNotebook: 'workbench:open-run-notebook',
  openRunsTable: 'workbench:open-runs-table',
  openMonitor: 'workbench:open-monitor',
  /** The Runs tab's context menu: act on the selected runs, as its toolbar buttons do. */
  tableAction: 'workbench:runs-table-action'
};

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'workbench-jupyterlab:plugin',
  description: 'Workbench: snapshots, tracked runs, comparisons and models in JupyterLab.',
  autoStart: true,
  requires: [INotebookTracker, IRenderMimeRegistry],
  optional: [ICommandPalette, ILayoutRestorer, IThemeManager, IEditorLanguageRegistry],
  activate: (
    app: JupyterFrontEnd,
    notebooks: INotebookTracker,
    rendermime: IRenderMimeRegistry,
    palette: ICommandPalette | null,
    restorer: ILayoutRestorer | null,
    themes: IThemeManager | null,
    languages: IEditorLanguageRegistry | null
  ) => {
    const openInMain = (widget: MainAreaWidget) => {
      if (!widget.isAttached) {
        app.shell.add(widget, 'main');
      }
      app.shell.activateById(widget.id);
    };
    const openedNotebooks = new Map<string, MainAreaWidget>();

    const sidebar = new WorkbenchSidebar({
      openNotebook: runId => void app.commands.execute(COMMANDS.openRunNotebook, { runId }),
      compare: (runIds, metric) =>
        void app.commands.execute(COMMANDS.compare, { runIds, metric }),
      openRunsTable: () => void app.commands.execute(COMMANDS.openRunsTable),
      openMonitor: model => void app.commands.execute(COMMANDS.openMonitor, { model })
    });
    app.shell.add(sidebar, 'left', { rank: 850 });
    if (restorer) {
      restorer.add(sidebar, sidebar.id);
    }

    app.commands.addCommand(COMMANDS.openSidebar, {
      label: 'Show Workbench',
      icon: workbenchIcon,
      execute: () => app.shell.activateById(sidebar.id)
    });

    app.commands.addCommand(COMMANDS.openRunNotebook, {
      label: 'Open the Executed Notebook of a Run',
      execute: args => {
        const runId = String(args.runId ?? '');
        if (!runId) {
          return;
        }
        const existing = openedNotebooks.get(runId);
        if (existing && !existing.isDisposed) {
          app.shell.activateById(existing.id);
          return;
        }
        const widget = openExecutedNotebook(runId, rendermime, languages, openInMain);
        openedNotebooks.set(runId, widget);
      }
    });

    app.commands.addCommand(COMMANDS.compare, {
      label: 'Compare Runs',
      execute: args => {
        const runIds = (args.runIds as string[] | undefined) ?? [];
        if (runIds.length) {
          openCompare(runIds, (args.metric as string | null) ?? null, openInMain);
        }
      }
    });

    // A model's Monitor tab: one per model (the command re-activates it).
    const monitors = new Map<string, MainAreaWidget<MonitorView>>();
    app.commands.addCommand(COMMANDS.openMonitor, {
      label: args => (args.model ? `Monitor ${args.model}` : 'Open Model Monitor'),
      caption: 'Live quality, traffic, latency, drift and A/B verdicts of a served model',
      icon: workbenchIcon,
      execute: args => {
        const model = String(args.model ?? '');
        if (model) {
          monitors.set(model, openMonitor(model, monitors.get(model), openInMain));
        }
      }
    });

    // The Runs tab: one at a time (the command re-activates it), restored with the layout.
    const tables = new WidgetTracker<MainAreaWidget<RunsTable>>({ namespace: 'workbench-runs-table' });
    let runsTab: MainAreaWidget<RunsTable> | null = null;
    const runsTable = (): RunsTable | null => (runsTab && !runsTab.isDisposed ? runsTab.content : null);
    app.commands.addCommand(COMMANDS.openRunsTable, {
      label: 'Open Runs Table',
      caption: 'All runs in a table: sort, filter, group, select and compare',
      icon: workbenchIcon,
      execute: () => {
        if (!runsTab || runsTab.isDisposed) {
          runsTab = createRunsTableWidget({
            openNotebook: runId => void app.commands.execute(COMMANDS.openRunNotebook, { runId }),
            compare: (runIds, metric) => void app.commands.execute(COMMANDS.compare, { runIds, metric }),
            promote: runId => sidebar.promote(runId) // the sidebar's flow: gates' verdicts in the dialog
          });
          void tables.add(runsTab);
        }
        openInMain(runsTab);
        return runsTab;
      }
    });
    if (restorer) {
      void restorer.restore(tables, { command: COMMANDS.openRunsTable, name: () => 'runs-table' });
    }
    const tableActions: Record<string, string> = {
      open: 'Open Executed Notebook',
      compare: 'Compare Selected Runs',
      copy: 'Copy Run Ids',
      promote: 'Register Run…',
      rerun: 'Rerun',
      cancel: 'Cancel Run'
    };
    app.commands.addCommand(COMMANDS.tableAction, {
      label: args => tableActions[String(args.action)] ?? String(args.action),
      isEnabled: args => runsTable()?.canDo(String(args.action)) ?? false,
      execute: args => runsTable()?.doAction(String(args.action))
    });
    Object.keys(tableActions).forEach((action, rank) => {
      app.contextMenu.addItem({
        command: COMMANDS.tableAction,
        args: { action },
        selector: '.wb-RunsTable-grid',
        rank: 10 + rank
      });
    });

    const currentPath = (): string | null => notebooks.currentWidget?.context.path ?? null;
    app.commands.addCommand(COMMANDS.runExperiment, {
      label: 'Run as Experiment',
      caption: 'Run this notebook (or a sweep of it) as a tracked Workbench experiment',
      icon: workbenchIcon,
      isEnabled: () => currentPath() !== null,
      execute: async args => {
        const panel = notebooks.currentWidget;
        const path = (args.path as string | undefined) ?? panel?.context.path;
        if (!path) {
          return;
        }
        if (panel && panel.context.path === path && panel.context.model.dirty) {
          await panel.context.save(); // the run executes the file on disk
        }
        await runAsExperiment(path, () => {
          app.shell.activateById(sidebar.id);
          void sidebar.loadRuns(true);
        });
      }
    });

    if (palette) {
      for (const command of [COMMANDS.runExperiment, COMMANDS.openSidebar, COMMANDS.openRunsTable]) {
        palette.addItem({ command, category: 'Workbench' });
      }
    }

    app.docRegistry.addWidgetExtension('Notebook', new RunButtonExtension(app));

    // Charts draw with colours, not CSS: re-colour them once the new theme's CSS is in.
    // So does the runs table's grid, which paints on a canvas.
    themes?.themeChanged.connect(() =>
      requestAnimationFrame(() => {
        restyleCharts();
        restyleMonitors();
        restyleRunsTables();
      })
    );
  }
};

/** The "Run as experiment" button in every notebook's toolbar. */
class RunButtonExtension
  implements DocumentRegistry.IWidgetExtension<NotebookPanel, INotebookModel>
{
  constructor(private app: JupyterFrontEnd) {}

  createNew(panel: NotebookPanel): IDisposable {
    const button = new ToolbarButton({
      className: 'wb-RunButton',
      icon: workbenchIcon,
      label: 'Run as experiment',
      tooltip: 'Run this notebook as a tracked Workbench experiment',
      onClick: () =>
        void this.app.commands.execute(COMMANDS.runExperiment, { path: panel.context.path })
    });
    panel.toolbar.insertAfter('cellType', 'workbench-run', button);
    return new DisposableDelegate(() => button.dispose());
  }
}

export default plugin;
