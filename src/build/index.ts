/**
 * The image builder (`berth build`): Dockerfile parsing, stages, steps on snapshots under runc, the
 * build cache and layers. Sits below the daemon and above images, snapshots, content and the runtime.
 */
export {
  type BuildEvent,
  Builder,
  type BuilderOptions,
  type BuildResult,
  type BuildSpec,
  createBuilder,
  stepFailureOf,
} from "./builder.js";
export { type Dockerfile, type Instruction, parseDockerfile } from "./dockerfile.js";
