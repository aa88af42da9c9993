// kinesalite's own CLI binds every interface and allows only 10 shards in all.
const port = parseInt(process.argv[2] || '4567', 10);
require('kinesalite')({ createStreamMs: 0, deleteStreamMs: 0, updateStreamMs: 0, shardLimit: 1000 })
  .listen(port, '127.0.0.1', () => console.log(`kinesalite listening on 127.0.0.1:${port}`));
