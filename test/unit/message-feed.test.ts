import { feedCases } from './feed-cases';

// Every feed case with the feed read through its async iterator (consumers that pull).
feedCases('iterated');
