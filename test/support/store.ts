import { openStore } from "../../src/store/index.js";

/** A record as a restarted berthd would read it: through a fresh connection to the store at `dbPath`. */
export function readStored<T>(dbPath: string, collection: string, id: string): T | undefined {
  const store = openStore(dbPath);
  try {
    return store.collection<T>(collection).get(id);
  } finally {
    store.close();
  }
}
