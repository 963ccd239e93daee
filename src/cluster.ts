/**
 * `sockway/cluster`: `runCluster` (node:cluster workers sharing a port) and `clusterAdapter` (pub/sub
 * between those workers over their IPC channels), on their own entry point.
 *
 *   import { runCluster } from "sockway/cluster";
 *   await runCluster({ workers: 4, start: async ({ adapter }) => { ... } });
 *
 * The main entry re-exports the same bindings.
 */
export {
  type ClusterAdapterOptions,
  ClusterError,
  type ClusterErrorCode,
  type ClusterEvent,
  type ClusterOptions,
  type ClusterPrimary,
  ClusterRelay,
  type ClusterRelayOptions,
  type ClusterStopReason,
  type ClusterWorker,
  clusterAdapter,
  type RelayChannel,
  runCluster,
  type WorkerContext,
} from "./app/cluster.js";
