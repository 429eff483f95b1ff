#!/usr/bin/env node
// npm `bin` entry: registers the tsx loader, then runs the TypeScript CLI.
import { register } from 'tsx/esm/api';
register();
const { main } = await import('./portico.ts');
const code = await main(process.argv.slice(2));
if (code !== undefined) process.exitCode = code;
