/** The protocol shared by server and agent: topics, message shapes, validation. */
export * from './topics.ts';
export * from './json.ts';
export * from './software.ts';
export * from './manifest.ts';
export * from './key-certificate.ts';
export * from './root-rotation.ts';
export * from './agent-features.ts';
export * from './shadow-messages.ts';
export * from './presence.ts';
