export { type CriClient, type CriClientOptions, createCriClient, DEFAULT_SOCKET } from "./client.js";
