/** Stable codes for mistakes in how an application is put together. */
export type AppErrorCode =
  | "PLUGIN_MISSING"
  | "PLUGIN_ALREADY_INSTALLED"
  | "INVALID_OPTION"
  | "INVALID_REJECTION"
  | "REQUEST_RELEASED"
  | "ALREADY_LISTENING";

export class AppError extends Error {
  override readonly name = "AppError";
  constructor(
    readonly code: AppErrorCode,
    message: string,
  ) {
    super(message);
  }
}
