import type { Resolvers } from '../generated';
import { assistantResolvers } from './assistant';
import { authResolvers } from './auth';
import { commonResolvers } from './common';
import { eventResolvers } from './events';
import { messageResolvers } from './messages';
import { roomResolvers } from './rooms';

/** All resolvers, one file per schema domain (makeExecutableSchema merges them). */
export const resolvers: Resolvers[] = [commonResolvers, authResolvers, roomResolvers, messageResolvers, assistantResolvers, eventResolvers];
