// The statuses in lifecycle order as the wire spells them, for the views
// that list them (actionctl's stats table, the console's filters and
// overview). Derived from the vocabulary so that a new status is written
// once.
import { ActionStatus } from "../../gen/actionq/v1/action_pb.js";
import { STATUSES } from "./vocabulary.js";

export const WIRE_STATUSES: readonly ActionStatus[] = STATUSES.map((status) => ActionStatus[status.toUpperCase() as Uppercase<typeof status>]);
