import { feedCases } from './feed-cases';

// Every feed case with the feed read through its push interface, as a WebSocket subscription reads it:
// live events straight from the hub's fan-out, the feed buffering and catching up when the reader lags.
feedCases('pushed');
