/**
 * The test host: runs an application's WebSocket routes (handshake, routing, plugins, codec) against
 * client sessions over in-memory streams, or over TCP, with timed expectations, and sends HTTP
 * requests to its HTTP routes the same ways. See README, "Testing your routes".
 */
export { MemoryEnd, memoryPair } from "./memory-pair.js";
export {
  type TestApplicationOptions,
  type TestClient,
  type TestContext,
  type TestTransport,
  testApplication,
} from "./test-application.js";
export {
  DEFAULT_MAX_RESPONSE_BYTES,
  type TestHttpClient,
  type TestRequestOptions,
  type TestResponse,
} from "./test-http.js";
export {
  DEFAULT_EXPECT_TIMEOUT,
  ExpectationError,
  type ExpectOptions,
  TestHostError,
  TestSession,
} from "./test-session.js";
