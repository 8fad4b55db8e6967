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
