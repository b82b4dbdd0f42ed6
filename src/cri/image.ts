import type { MessageInitShape } from "@bufbuild/protobuf";
import type {
  AuthConfig,
  ImageFsInfoResponseSchema,
  ImageSchema,
  ImageStatusRequest,
  ImageStatusResponseSchema,
  ListImagesRequest,
  ListImagesResponseSchema,
  PullImageRequest,
  RemoveImageRequest,
} from "../api/gen/runtime/v1/api_pb.js";
import { invalidArgument } from "../errdefs/index.js";
import type { ImageRecord, LayerProgress, RegistryCredentials } from "../images/index.js";
import type { CriContext } from "./context.js";

// The ImageService RPCs: thin conversions around src/images.

/** CRI Image: uid when the image's USER is numeric, username when it is a name (kubelet's runAsNonRoot check). */
export function toImage(r: ImageRecord): MessageInitShape<typeof ImageSchema> {
  const user = (r.config.config?.User ?? "").split(":")[0] ?? "";
  const numeric = /^\d+$/.test(user);
  return {
    id: r.id,
    repoTags: r.repoTags,
    repoDigests: r.repoDigests,
    size: BigInt(r.size),
    ...(numeric ? { uid: { value: BigInt(user) } } : {}),
    username: numeric ? "" : user,
    spec: { image: r.id },
    pinned: r.pinned,
  };
}

/** The CRI AuthConfig in domain form (empty fields left out); undefined without one. */
export function credentialsOf(a: AuthConfig | undefined): RegistryCredentials | undefined {
  if (a === undefined) return undefined;
  return {
    ...(a.username ? { username: a.username } : {}),
    ...(a.password ? { password: a.password } : {}),
    ...(a.auth ? { auth: a.auth } : {}),
    ...(a.serverAddress ? { serverAddress: a.serverAddress } : {}),
    ...(a.identityToken ? { identityToken: a.identityToken } : {}),
    ...(a.registryToken ? { registryToken: a.registryToken } : {}),
  };
}

export async function pullImage(
  ctx: CriContext,
  req: Pick<PullImageRequest, "image" | "auth">,
  signal: AbortSignal,
  onProgress?: (p: LayerProgress) => void,
) {
  const ref = req.image?.image;
  if (!ref) throw invalidArgument("image reference is required");
  const auth = credentialsOf(req.auth);
  const image = await ctx.images.pull(ref, {
    signal,
    ...(auth ? { auth } : {}),
    ...(onProgress ? { onProgress } : {}),
  });
  return { imageRef: image.id };
}

export function imageStatus(
  ctx: CriContext,
  req: ImageStatusRequest,
): MessageInitShape<typeof ImageStatusResponseSchema> {
  const ref = req.image?.image;
  if (!ref) throw invalidArgument("image reference is required");
  const image = ctx.images.status(ref);
  if (!image) return {};
  return {
    image: toImage(image),
    info: req.verbose ? { info: JSON.stringify({ imageSpec: image.config, chainIds: image.chainIds }) } : {},
  };
}

export function listImages(ctx: CriContext, req: ListImagesRequest): MessageInitShape<typeof ListImagesResponseSchema> {
  const filter = req.filter?.image?.image;
  return { images: ctx.images.list(filter || undefined).map(toImage) };
}

export async function removeImage(ctx: CriContext, req: RemoveImageRequest) {
  const ref = req.image?.image;
  if (!ref) throw invalidArgument("image reference is required");
  await ctx.images.remove(ref);
  return {};
}

export async function imageFsInfo(ctx: CriContext): Promise<MessageInitShape<typeof ImageFsInfoResponseSchema>> {
  const fs = await ctx.images.fsInfo();
  return {
    imageFilesystems: [
      {
        timestamp: fs.timestamp,
        fsId: { mountpoint: fs.mountpoint },
        usedBytes: { value: BigInt(fs.usedBytes) },
        inodesUsed: { value: BigInt(fs.inodesUsed) },
      },
    ],
  };
}
