import { z } from 'zod';
import { badUserInput } from './errors';

/** Text that is stored exactly as sent: no NUL characters, no unpaired UTF-16 surrogates. */
export const storable = (s: string) => !s.includes('\u0000') && !/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/.test(s);
const NUL_MESSAGE = 'must not contain NUL characters or unpaired surrogates';
/** Length in characters (code points), as people count them: an emoji is one. */
const chars = (s: string) => [...s].length;
/**
 * Whether text has a character people see: not white space, a control character, one Unicode
 * leaves undrawn (zero-width spaces and joiners, variation selectors, Hangul fillers, tags), or the
 * blank Braille pattern (U+2800, drawn as an empty cell: the usual way round "not blank").
 */
const visible = (s: string) => /[^\p{White_Space}\p{Cc}\p{Default_Ignorable_Code_Point}\u2800]/u.test(s);
const BLANK_MESSAGE = 'must not be blank';
/** Control characters (a terminal's escapes, a bell) but tabs and line breaks: not what people write. */
const noControls = (s: string) => !/[^\P{Cc}\t\n\r]/u.test(s);
const CONTROL_MESSAGE = 'must not contain control characters other than tabs and line breaks';
/**
 * A name shown on one line as written, once trimmed (white space around it goes): no control
 * characters, line or paragraph separators, or bidirectional embeddings and overrides (which make
 * a name read otherwise than it is written).
 */
const oneLine = (s: string) => !/[\p{Cc}\p{Zl}\p{Zp}\u202A-\u202E\u2066-\u2069]/u.test(s);
const ONE_LINE_MESSAGE = 'must not contain control characters, line breaks or direction overrides';

/** A name people read on one line (a display name, a room's): trimmed, then something visible, `oneLine`, at most `max` characters. */
function nameText(max: number) {
  return z
    .string()
    .refine(storable, NUL_MESSAGE)
    .transform((s) => s.trim())
    .pipe(z.string().refine(oneLine, ONE_LINE_MESSAGE).refine(visible, BLANK_MESSAGE).refine((s) => chars(s) <= max, `must be at most ${max} characters`));
}

export const MAX_BODY_LENGTH = 4000;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** True for a well-formed UUID; anything else cannot name a row and never reaches SQL. */
export const isUuid = (value: unknown): value is string => typeof value === 'string' && UUID.test(value);

/** A username, as `signUp` takes one. */
const username = z
  .string()
  .min(3, 'must be at least 3 characters')
  .max(32, 'must be at most 32 characters')
  .regex(/^[A-Za-z0-9_]+$/, 'may contain only letters, digits and underscores');

/**
 * Whether `name` could be someone's username. A log-in with any other name is wrong without a
 * lookup: PostgreSQL's `lower()` folds some letters outside ASCII onto ASCII ones (`İ` onto `i`),
 * which JavaScript's `toLowerCase()`, keying the log-in budgets, does not, so such a name would
 * find an account under a budget of its own.
 */
export const couldBeUsername = (name: string) => username.safeParse(name).success;

/** At most 256 characters, counted as people count them (`chars`), like every other text. */
const passwordLength = (s: string) => chars(s) <= 256;
const PASSWORD_LENGTH_MESSAGE = 'must be at most 256 characters';

export const signUpInput = z.object({
  username,
  password: z
    .string()
    .refine((s) => chars(s) >= 8, 'must be at least 8 characters')
    .refine(passwordLength, PASSWORD_LENGTH_MESSAGE)
    .refine(storable, NUL_MESSAGE),
  displayName: nameText(64).nullish(),
});

export const logInInput = z.object({
  username: z.string().max(32, 'must be at most 32 characters').refine(storable, NUL_MESSAGE),
  password: z.string().refine(passwordLength, PASSWORD_LENGTH_MESSAGE),
});

/** The assistant's system prompt for a room. */
const assistantInstructions = z
  .string()
  .refine((s) => chars(s) <= 4000, 'must be at most 4000 characters')
  .refine(storable, NUL_MESSAGE);

/** A room's name: 1 to 100 characters after trimming, on one line. */
const roomName = nameText(100);

export const createRoomInput = z.object({
  name: roomName,
  kind: z.enum(['PUBLIC', 'PRIVATE'], { errorMap: () => ({ message: 'must be PUBLIC or PRIVATE (a direct room is opened with openDirectRoom)' }) }),
  assistantEnabled: z.boolean().nullish(),
  assistantInstructions: assistantInstructions.nullish(),
});

export const updateRoomInput = z.object({
  roomId: z.string(),
  name: roomName.nullish(),
  assistantEnabled: z.boolean().nullish(),
  assistantInstructions: assistantInstructions.nullish(),
});

/** A message body a person writes: something visible, no control characters but tabs and line breaks, at most MAX_BODY_LENGTH characters. */
const messageBody = z
  .string()
  .refine(storable, NUL_MESSAGE)
  .refine(noControls, CONTROL_MESSAGE)
  .refine(visible, BLANK_MESSAGE)
  .refine((s) => chars(s) <= MAX_BODY_LENGTH, `must be at most ${MAX_BODY_LENGTH} characters`);

export const sendMessageInput = z.object({
  roomId: z.string(),
  body: messageBody,
  parentId: z.string().nullish(),
  clientId: z.string().min(1, 'must not be empty').max(128, 'must be at most 128 characters').refine(storable, NUL_MESSAGE).nullish(),
});

export const editMessageInput = z.object({
  messageId: z.string(),
  body: messageBody,
});

const graphemes = new Intl.Segmenter('en', { granularity: 'grapheme' });
/** Something drawn as an emoji: a pictograph, a flag (regional indicators) or a keycap. */
const EMOJI = /\p{Extended_Pictographic}|\p{Regional_Indicator}{2}|\u20E3/u;
/**
 * One element of an emoji ZWJ sequence as Unicode TR51 writes a possible emoji (section 1.4.9),
 * fully qualified: a keycap (0–9, # or *, VS16, the enclosing keycap mark: no other character
 * takes one), a flag, or an emoji character with at most one modification (a skin tone or VS16).
 */
const EMOJI_ELEMENT = String.raw`(?:[0-9#*]\uFE0F\u20E3|\p{Regional_Indicator}{2}|\p{Emoji}(?:\p{Emoji_Modifier}|\uFE0F)?)`;
/**
 * A possible emoji: elements joined by ZWJ, nothing else, or one of the flags Unicode spells with
 * tag characters (🏴󠁧󠁢󠁳󠁣󠁴󠁿; any other tags draw nothing). Emoji made of elements that Unicode has not
 * listed yet pass; an emoji with characters that draw nothing after it (a joiner at the end, a
 * grapheme joiner, a second skin tone, a combining accent, tags) does not, so it cannot pass for
 * another reaction.
 */
const POSSIBLE_EMOJI = new RegExp(`^(?:\\p{RGI_Emoji_Tag_Sequence}|${EMOJI_ELEMENT}(?:\u200D${EMOJI_ELEMENT})*)$`, 'v');
/** A custom emoji's short name, as chat apps write it: `:party_parrot:`. */
const SHORT_NAME = /^:[a-z0-9_+-]{1,32}:$/;

/** The emoji and text presentation selectors (VS16, VS15): what makes ❤ drawn as ❤️, or ❤️ as ❤︎. */
const VS16 = '\uFE0F';
const VS15 = '\uFE0E';
/** A pictograph drawn as text unless VS16 follows it (❤, ☺, ✔, 🏳). */
const TEXT_BY_DEFAULT = /^(?!\p{Emoji_Presentation})\p{Extended_Pictographic}$/u;
/** A skin tone: after a pictograph, it makes it an emoji without VS16 (⛹🏽). */
const MODIFIER = /^\p{Emoji_Modifier}$/u;
const KEYCAP_BASE = /^[0-9#*]$/;
const KEYCAP = '\u20E3';

/**
 * An emoji in its fully-qualified form (Unicode TR51, what emoji keyboards send): its presentation
 * selectors dropped, then VS16 put back after each pictograph drawn as text by default unless a
 * skin tone follows it, and after a keycap's digit. So ❤, ❤️ and ❤︎ are one reaction, as are 🏳‍🌈
 * and 🏳️‍🌈, 1⃣ and 1️⃣, 👍 and 👍 with a needless VS16, whichever a client sent.
 */
export function fullyQualified(text: string): string {
  const points = [...text].filter((point) => point !== VS16 && point !== VS15);
  let out = '';
  for (let i = 0; i < points.length; i++) {
    const point = points[i];
    const next = points[i + 1];
    out += point;
    const textByDefault = TEXT_BY_DEFAULT.test(point) && !(next !== undefined && MODIFIER.test(next));
    if (textByDefault || (KEYCAP_BASE.test(point) && next === KEYCAP)) out += VS16;
  }
  return out;
}

/**
 * An emoji is one grapheme drawn as an emoji (👍, 🇫🇷, 👩🏽‍💻, 1️⃣) and made as TR51 makes one
 * (`POSSIBLE_EMOJI`), taken in its fully-qualified form, or a short name such as `:shipit:`.
 */
export const emoji = z
  .string()
  .refine(
    (s) => SHORT_NAME.test(s) || (s.length <= 64 && [...graphemes.segment(s)].length === 1 && EMOJI.test(s) && POSSIBLE_EMOJI.test(fullyQualified(s))),
    'must be one emoji (e.g. 👍) or a short name of 1 to 32 lower-case letters, digits, _, + or - between colons (e.g. :shipit:)',
  )
  .transform(reactionEmoji);

/** A reaction's emoji as it is kept: a short name as it is, an emoji fully qualified. */
export function reactionEmoji(text: string): string {
  return SHORT_NAME.test(text) ? text : fullyQualified(text);
}

export const reactionInput = z.object({
  messageId: z.string(),
  emoji,
});

/** What people type into a search box: 1 to 100 characters after trimming. */
export const searchText = z
  .string()
  .refine(storable, NUL_MESSAGE)
  .transform((s) => s.trim())
  .pipe(z.string().refine(visible, BLANK_MESSAGE).refine((s) => chars(s) <= 100, 'must be at most 100 characters'));

/** Page sizes: `first`/`last` between 1 and `max`. */
export const pageSize = (max: number) => z.number().int().min(1, 'must be at least 1').max(max, `must be at most ${max}`);

/**
 * Parses input with a schema, or throws BAD_USER_INPUT naming the field at fault
 * (e.g. `body must not be blank`, `extensions.field = "body"`).
 */
export function parseInput<S extends z.ZodTypeAny>(schema: S, raw: unknown, name?: string): z.output<S> {
  const result = schema.safeParse(raw);
  if (result.success) return result.data;
  const issue = result.error.issues[0];
  const field = [name, ...issue.path].filter((p) => p !== undefined).join('.') || undefined;
  throw badUserInput(field ? `${field} ${issue.message}` : issue.message, field);
}
