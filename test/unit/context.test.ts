import type { DataSource } from 'typeorm';
import { createContextFactory, type Services } from '../../src/graphql/context';

// Making loaders reads nothing from the database: a stand-in is enough.
const context = createContextFactory({} as DataSource, {} as Services);
const viewer = { id: 'u1', sessionId: 's1' };

describe('operation contexts', () => {
  it('makes loaders when first read, and the same ones on every later read', () => {
    const ctx = context(viewer, 'r1', '127.0.0.1');
    expect(Object.keys(ctx)).not.toContain('loaders');
    const loaders = ctx.loaders;
    expect(ctx.loaders).toBe(loaders);
    expect(ctx.newLoaders()).not.toBe(loaders);
  });

  it('gives a spread copy everything but the loaders, and newLoaders still answers for the viewer', () => {
    const ctx = context(viewer, 'r1', '127.0.0.1');
    const copy = { ...ctx };
    expect(copy).toMatchObject({ viewer, requestId: 'r1', clientAddress: '127.0.0.1' });
    expect('loaders' in copy).toBe(false);
    expect(copy.newLoaders().viewer.membership).toBeDefined();
  });

  it("gives Apollo's per-operation copy (same prototype) loaders of its own", () => {
    const ctx = context(viewer, 'r1', '127.0.0.1');
    const clone = Object.assign(Object.create(Object.getPrototypeOf(ctx)), ctx);
    expect(clone.loaders).toBe(clone.loaders);
    expect(clone.loaders).not.toBe(ctx.loaders);
  });
});
