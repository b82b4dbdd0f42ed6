/** True when every selector label is present with the same value (CRI label selectors are equality-only). */
export function matchLabels(labels: Record<string, string>, selector: Record<string, string> | undefined): boolean {
  if (!selector) return true;
  return Object.entries(selector).every(([k, v]) => labels[k] === v);
}
