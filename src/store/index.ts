export { type Collection, openStore, type Store } from "./store.js";
