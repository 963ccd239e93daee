export { AppError, type AppErrorCode } from "../protocol/index.js";
