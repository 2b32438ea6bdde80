const m = await import('/work/main/migrations/20260101000100_event_store.ts');
const sqls: string[] = [];
await m.up({ raw: async (s: string) => { sqls.push(s); } } as any);
console.log(sqls[1]);
