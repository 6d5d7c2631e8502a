import type { ComponentChildren } from 'preact';

/**
 * The box of a table: the table fills it (the main column on a desktop), and one that cannot be
 * that narrow (six columns on a phone) scrolls sideways inside it rather than widening the page.
 * Every table of the dashboard is in one (styles.css, .table-scroll).
 */
export function TableScroll({ children }: { children: ComponentChildren }) {
  return <div class="table-scroll">{children}</div>;
}
