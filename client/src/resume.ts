import { Kind, parse, visit, type ArgumentNode, type DocumentNode, type FieldNode, type OperationDefinitionNode, type SelectionNode, type VariableDefinitionNode } from 'graphql';

/** The subscriptions the kit resumes after a reconnect. */
export type ResumableField = 'messageAdded' | 'roomEvents';

/**
 * Whether `RoomEvent` members carry their own change cursor (`MessageAdded.cursor`,
 * `MessageUpdated.cursor`: docs/guarantees.md, guarantee 8). Without it the kit resumes `roomEvents` from the
 * last added message's cursor.
 */
const EVENT_CURSORS = true;

/** What the kit adds to a resumable subscription's selection so it can track its position. */
const EXTRA_SELECTIONS: Record<ResumableField, readonly SelectionNode[]> = {
  messageAdded: selectionsOf(`{ __typename id seq cursor }`),
  roomEvents: selectionsOf(`{
    __typename
    ... on MessageAdded { ${EVENT_CURSORS ? 'cursor' : ''} message { __typename id seq cursor status deltaCount } }
    ... on MessageUpdated { ${EVENT_CURSORS ? 'cursor' : ''} message { __typename id status deltaCount } }
    ... on AssistantDelta { messageId index }
  }`),
};

function selectionsOf(source: string): readonly SelectionNode[] {
  const operation = parse(source).definitions[0] as OperationDefinitionNode;
  return operation.selectionSet.selections;
}

/** The resumable root field of a subscription document and its response key, if it has one. */
export function resumableFieldOf(document: DocumentNode): { field: ResumableField; key: string } | undefined {
  const operation = document.definitions.find((d): d is OperationDefinitionNode => d.kind === Kind.OPERATION_DEFINITION);
  if (operation?.operation !== 'subscription') return undefined;
  const roots = operation.selectionSet.selections.filter((s): s is FieldNode => s.kind === Kind.FIELD);
  const root = roots.find((f) => f.name.value === 'messageAdded' || f.name.value === 'roomEvents');
  if (!root || roots.length !== 1) return undefined;
  return { field: root.name.value as ResumableField, key: root.alias?.value ?? root.name.value };
}

/** The variable the kit binds a resumable field's `after` to when the application did not. */
const KIT_AFTER = 'chatKitAfter';

/**
 * The document with what the kit needs added to its root field: the selections that track the
 * subscription's position, and an `after` argument bound to a variable — the application's own
 * (`after: $x`), or one the kit declares when the application gave none or a literal — so every
 * re-subscribe resumes from the position. Returns the document, the name of that variable and,
 * for a literal, where the application asked to start.
 */
export function withResumeSelections(
  document: DocumentNode,
  field: ResumableField,
): { document: DocumentNode; afterVariable: string; initialAfter?: string } {
  let afterVariable = KIT_AFTER;
  let initialAfter: string | undefined;
  const transformed = visit(document, {
    OperationDefinition(operation) {
      let declare = false;
      const selections = operation.selectionSet.selections.map((s) => {
        if (s.kind !== Kind.FIELD || s.name.value !== field || !s.selectionSet) return s;
        const given = s.arguments?.find((a) => a.name.value === 'after');
        if (given?.value.kind === Kind.VARIABLE) afterVariable = given.value.name.value;
        else declare = true;
        if (given?.value.kind === Kind.STRING) initialAfter = given.value.value; // the application's literal: where to start
        const argument: ArgumentNode = { kind: Kind.ARGUMENT, name: { kind: Kind.NAME, value: 'after' }, value: { kind: Kind.VARIABLE, name: { kind: Kind.NAME, value: KIT_AFTER } } };
        return {
          ...s,
          arguments: declare ? [...(s.arguments ?? []).filter((a) => a.name.value !== 'after'), argument] : s.arguments,
          selectionSet: { ...s.selectionSet, selections: [...s.selectionSet.selections, ...EXTRA_SELECTIONS[field]] },
        };
      });
      const definition: VariableDefinitionNode = {
        kind: Kind.VARIABLE_DEFINITION,
        variable: { kind: Kind.VARIABLE, name: { kind: Kind.NAME, value: KIT_AFTER } },
        type: { kind: Kind.NAMED_TYPE, name: { kind: Kind.NAME, value: 'String' } },
      };
      return {
        ...operation,
        variableDefinitions: declare ? [...(operation.variableDefinitions ?? []), definition] : operation.variableDefinitions,
        selectionSet: { ...operation.selectionSet, selections },
      };
    },
  });
  return { document: transformed, afterVariable, initialAfter };
}

/** A cursor's position in the room's order, when the kit can read it (opaque to applications). */
function positionOf(cursor: string): { kind: string; n: number } | undefined {
  try {
    const text = atob(cursor.replace(/-/g, '+').replace(/_/g, '/').padEnd(cursor.length + ((4 - (cursor.length % 4)) % 4), '='));
    // `m1:<room>:<seq>` for a message, `e1:<room>:<change>:…` for an event: the third part orders them.
    const [kind, , position] = text.split(':');
    const n = Number(position);
    return position !== undefined && /^\d+$/.test(position) && Number.isSafeInteger(n) ? { kind, n } : undefined;
  } catch {
    return undefined;
  }
}

type Event = {
  __typename?: string;
  cursor?: string;
  seq?: number;
  message?: { id?: string; cursor?: string; seq?: number; status?: string; deltaCount?: number };
  messageId?: string;
  index?: number;
};

/**
 * The position of one resumable subscription: the cursor of the last event the application
 * received, which becomes `after` on every re-subscribe, and the filter that drops anything at or
 * below it (by `seq` for `messageAdded`, by the change number for `roomEvents`; a set of seen
 * cursors where a cursor cannot be read), and repeated assistant deltas. But for a reply still
 * streaming told again as it stands: the server tells it at the position of the event before it
 * (no change of the log) after a resume and when deltas were lost (the API's README, "The
 * assistant"), and the application needs it to append the deltas that follow.
 */
export class ResumeTracker {
  /** The cursor to resume after; undefined until the first event (then the caller's `after` stands). */
  cursor?: string;
  private last?: { kind: string; n: number };
  private readonly seen = new Set<string>();
  private readonly deltas = new Set<string>();

  constructor(private readonly field: ResumableField, private readonly key: string) {}

  /** Whether to deliver this result; updates the position when it does. */
  accept(data: Record<string, unknown> | null | undefined): boolean {
    const event = data?.[this.key] as Event | undefined;
    if (!event) return true; // an error result: the application decides
    if (event.__typename === 'AssistantDelta') {
      const id = `${event.messageId}:${event.index}`;
      if (this.deltas.has(id)) return false;
      this.deltas.add(id);
      if (this.deltas.size > 10_000) this.deltas.clear(); // deltas are ephemeral: only a reconnect's overlap matters
      return true;
    }
    const cursor = this.field === 'messageAdded' ? event.cursor : (event.cursor ?? (event.__typename === 'MessageAdded' ? event.message?.cursor : undefined));
    if (!cursor) return true;
    const position = positionOf(cursor);
    if (position && this.last && position.kind === this.last.kind) {
      if (position.n < this.last.n || (position.n === this.last.n && !this.retold(event, cursor))) return false;
    } else if (this.seen.has(cursor)) {
      return false;
    }
    if (position) this.last = position;
    this.seen.add(cursor);
    if (this.seen.size > 10_000) this.seen.clear();
    this.cursor = cursor;
    return true;
  }

  /** A streaming reply told again at the last event's position with more of its text: once each. */
  private retold(event: Event, cursor: string): boolean {
    const { message } = event;
    if (message?.status !== 'STREAMING' || (event.__typename !== 'MessageUpdated' && event.__typename !== 'MessageAdded')) return false;
    const told = `${cursor} ${message.id} ${message.deltaCount}`;
    if (this.seen.has(told)) return false;
    this.seen.add(told);
    return true;
  }
}
