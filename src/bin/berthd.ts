#!/usr/bin/env -S node --max-semi-space-size=1 --v8-pool-size=1
// A small young generation and one GC helper thread: berthd allocates little per RPC, and every
// megabyte of idle heap counts against the node it runs on (tests and the benchmark read these
// flags from this line, so it is the one place they are set).
import { berthdMain } from "../daemon/index.js";

await berthdMain(process.argv);
