import './base.css';
import './sidebar.css';
import './runsTable.css';
import './compare.css';
import './monitor.css';
