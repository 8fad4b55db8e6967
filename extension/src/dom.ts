/**
 * Building DOM nodes from text: every label, value and error a view shows goes through
 * `textContent`, never through HTML parsing, so user text cannot become markup.
 */

/** A new element with an optional class name and text. */
export function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  className = '',
  text = ''
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  if (className) {
    node.className = className;
  }
  if (text) {
    node.textContent = text;
  }
  return node;
}

/**
 * Make `line` a disclosure control (a click or Enter/Space toggles what it shows), announced to
 * assistive technology as a button that is `expanded` or not.
 */
export function disclosure(line: HTMLElement, expanded: boolean, toggle: () => void): void {
  line.tabIndex = 0;
  line.setAttribute('role', 'button');
  line.setAttribute('aria-expanded', String(expanded));
  line.onclick = toggle;
  line.onkeydown = event => {
    if (event.key === 'Enter' || event.key === ' ') {
      event.preventDefault();
      line.click();
    }
  };
}
