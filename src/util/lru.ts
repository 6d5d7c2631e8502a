/**
 * Puts `key` last in a Map used as an LRU (a Map iterates in insertion order) and drops the
 * least recently used entry beyond `max`.
 */
export function rememberLru<K, V>(map: Map<K, V>, key: K, value: V, max: number): void {
  map.delete(key);
  map.set(key, value);
  if (map.size > max) map.delete(map.keys().next().value!);
}
