export { metricsInterceptor } from "./interceptor.js";
export {
  type CniEvent,
  createMetrics,
  type EventLoopFigures,
  type Metrics,
  type MetricsSources,
  type PullEvent,
} from "./metrics.js";
export { type MetricsServer, serveMetrics } from "./server.js";
