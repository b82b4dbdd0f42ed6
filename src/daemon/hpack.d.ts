// hpack.js ships no types; berth uses only its Huffman code table ([bit length, code] by symbol).
declare module "hpack.js" {
  const hpack: { huffman: { encode: [number, number][] } };
  export default hpack;
}
