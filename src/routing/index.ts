export type { PathParams } from "./path-params.js";
export {
  type JoinedPath,
  joinPaths,
  type ParsedPattern,
  type PatternSegment,
  parsePattern,
  RoutePatternError,
} from "./path-pattern.js";
export { RoutePathError, splitRequestPath } from "./request-path.js";
export { type RouteMatch, RouteTree } from "./route-tree.js";
