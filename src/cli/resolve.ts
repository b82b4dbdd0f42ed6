/**
 * Unique ID prefixes, accepted wherever a command takes a container, pod or image. A prefix is
 * resolved through the List RPCs with an ID filter (berthd, containerd and CRI-O all match
 * prefixes there), then checked here, so the CLI behaves the same against any CRI runtime.
 */
import type { Container, Image, PodSandbox } from "../api/gen/runtime/v1/api_pb.js";
import type { CriClient } from "../client/index.js";
import { invalidArgumentStatus, notFoundStatus } from "./context.js";

/**
 * The one ID among `ids` that `ref` names: an exact match wins, else the only ID starting with
 * `ref`. NotFound when none does; InvalidArgument when several do. `kind` words the error.
 */
export function pickUnique(kind: string, ref: string, ids: readonly string[]): string {
  if (ref === "") throw invalidArgumentStatus(`${kind} ID is required`);
  const bare = (id: string) => id.replace(/^sha256:/, "");
  const want = bare(ref);
  const exact = ids.find((id) => id === ref || bare(id) === want);
  if (exact !== undefined) return exact;
  const matches = [...new Set(ids.filter((id) => bare(id).startsWith(want)))];
  if (matches.length === 1) return matches[0] as string;
  if (matches.length === 0) throw notFoundStatus(`${kind} ${JSON.stringify(ref)} not found`);
  const shown = matches.slice(0, 5).map((id) => bare(id).slice(0, 13));
  throw invalidArgumentStatus(
    `${kind} ID prefix ${JSON.stringify(ref)} is ambiguous: it matches ${matches.length} ${kind}s (${shown.join(", ")}${matches.length > 5 ? ", ..." : ""})`,
  );
}

/** The container a full ID or unique prefix names. */
export async function resolveContainer(client: CriClient, ref: string): Promise<Container> {
  const { containers } = await client.runtime.listContainers({ filter: { id: ref } });
  const id = pickUnique(
    "container",
    ref,
    containers.map((c) => c.id),
  );
  return containers.find((c) => c.id === id) as Container;
}

/** The pod sandbox a full ID or unique prefix names. */
export async function resolvePod(client: CriClient, ref: string): Promise<PodSandbox> {
  const { items } = await client.runtime.listPodSandbox({ filter: { id: ref } });
  const id = pickUnique(
    "pod sandbox",
    ref,
    items.map((p) => p.id),
  );
  return items.find((p) => p.id === id) as PodSandbox;
}

/**
 * The image a reference names: whatever ImageStatus resolves (tag, digest, ID; berthd also takes
 * ID prefixes), else a unique prefix of an image ID among ListImages.
 */
export async function resolveImage(client: CriClient, ref: string): Promise<Image> {
  const st = await client.image.imageStatus({ image: { image: ref } });
  if (st.image) return st.image;
  if (!/^(sha256:)?[0-9a-f]{1,64}$/.test(ref)) throw notFoundStatus(`image ${JSON.stringify(ref)} not found`);
  const { images } = await client.image.listImages({});
  const id = pickUnique(
    "image",
    ref,
    images.map((i) => i.id),
  );
  return images.find((i) => i.id === id) as Image;
}
