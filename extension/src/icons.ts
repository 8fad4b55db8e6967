import { LabIcon } from '@jupyterlab/ui-components';

const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 24 24">
  <g class="jp-icon3" fill="#616161">
    <path d="M9 2h6v2h-1v5.2l5.6 9.3A2.3 2.3 0 0 1 17.6 22H6.4a2.3 2.3 0 0 1-2-3.5L10 9.2V4H9z
      M12 4v5.8L9.6 14h4.8L12 9.8z"/>
  </g>
</svg>`;

/** The Workbench flask: sidebar tab, toolbar button and main-area tabs. */
export const workbenchIcon = new LabIcon({ name: 'workbench:flask', svgstr: svg });
