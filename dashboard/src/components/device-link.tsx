import { deviceHref } from '../format.ts';
import { Link } from '../router.tsx';

/**
 * A link to a device's page that keeps to its column: a long id without spaces (ids may be
 * 128 characters and more) is cut with an ellipsis, rather than widening its table past the
 * page, and given whole in the title (the tooltip) and to screen readers.
 */
export function DeviceLink({ id }: { id: string }) {
  return (
    <Link href={deviceHref(id)} class="device-id" title={id}>
      {id}
    </Link>
  );
}
