/**
 * Type-level parameters of a path pattern literal, so handlers get `call.parameters.room` typed:
 *   PathParams<"/chat/{room}/{id?}">  → { room: string; id?: string }
 *   PathParams<"/static/{path...}">   → { path: string }   (a tail is always present, maybe "")
 * A pattern that is not a literal (or contains a `${string}` segment) degrades to a string record.
 * Invalid patterns are not diagnosed here; `parsePattern` rejects them at runtime.
 */

type Segments<P extends string> = P extends `${infer Head}/${infer Rest}` ? Head | Segments<Rest> : P;

// Checked tail → optional → plain, since "{a...}" and "{a?}" also fit the plain `{${infer N}}` shape.
type RequiredName<S extends string> = S extends `{${infer Name}...}`
  ? Name
  : S extends `{${string}?}`
    ? never
    : S extends `{${infer Name}}`
      ? Name
      : never;

type OptionalName<S extends string> = S extends `{${string}...}`
  ? never
  : S extends `{${infer Name}?}`
    ? Name
    : never;

type Flatten<T> = { [K in keyof T]: T[K] };

type LiteralPathParams<P extends string> = Flatten<
  { [K in RequiredName<Segments<P>>]: string } & { [K in OptionalName<Segments<P>>]?: string }
>;

export type PathParams<P extends string> =
  string extends Segments<P> ? Record<string, string | undefined> : LiteralPathParams<P>;
